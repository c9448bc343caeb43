"""Idempotency keys and coordination of the scheduled run: every delivery of one scheduled
time maps to one key, one writer holds the lease, a dead run's claim and lease are taken
over. Sample events are the JSON files in functions/events/."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import pytest

from segmentation import InvalidInput
from segmentation.store import LocalStore
from training.release import ledger
from training.retrain import coordination
from training.retrain.trigger import from_eventbridge, from_pubsub, from_request

EVENTS = Path(__file__).resolve().parents[1] / "functions" / "events"


def _event(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text())


def test_a_redelivered_pubsub_message_keeps_its_key_and_a_new_message_id_does_not_matter():
    data = _event("retrain_pubsub")["data"]
    first = from_pubsub(data)
    redelivery = json.loads(json.dumps(data))
    redelivery["message"]["messageId"] = "another-attempt"
    assert from_pubsub(redelivery).key == first.key
    assert first.key == "gcp:segmentation-retrain:2026-11-30T02:00Z"
    assert first.force is False and first.source == "cloud_scheduler"


def test_the_next_scheduled_time_is_another_key():
    data = _event("retrain_pubsub")["data"]
    later = json.loads(json.dumps(data))
    later["message"]["publishTime"] = "2026-12-01T02:00:02.5Z"
    assert from_pubsub(later).key != from_pubsub(data).key


def test_a_pubsub_message_can_force_a_run():
    data = _event("retrain_pubsub")["data"]
    data["message"]["data"] = base64.b64encode(b'{"force": true}').decode()
    assert from_pubsub(data).force is True


def test_eventbridge_keys_are_the_schedule_and_its_time_never_the_execution_id():
    event = _event("retrain_eventbridge")
    retry = {**event, "execution_id": "c8a9f0b2-attempt-2"}
    assert from_eventbridge(event).key == from_eventbridge(retry).key
    assert from_eventbridge(event).key.startswith("aws:arn:aws:scheduler:")
    assert from_eventbridge(event).key.endswith(":2026-11-30T02:00Z")


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"scheduled_time": "2026-11-30T02:00:00Z"}, "schedule_arn"),
        ({"schedule_arn": "arn:aws:scheduler:x", "scheduled_time": "yesterday"}, "scheduled_time"),
        (
            {"schedule_arn": "arn:aws:scheduler:x", "scheduled_time": "2026-11-30T02:00:00"},
            "scheduled_time",
        ),
    ],
)
def test_a_malformed_eventbridge_input_names_the_field(event, field):
    with pytest.raises(InvalidInput) as caught:
        from_eventbridge(event)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("key", "body", "field"),
    [
        (None, b"{}", "Idempotency-Key"),
        ("k", b"[", "body"),
        ("k", b'{"force": 1}', "force"),
        ("k", b'{"force": true, "k": 2}', "body"),
    ],
)
def test_a_manual_request_needs_a_key_and_a_boolean_force(key, body, field):
    with pytest.raises(InvalidInput) as caught:
        from_request(key, body)
    assert caught.value.field == field


def test_only_one_of_two_concurrent_runs_gets_the_lease(tmp_path):
    store = LocalStore(tmp_path)
    results = []
    barrier = threading.Barrier(8)

    def contend(i: int) -> None:
        barrier.wait()
        results.append(coordination.acquire_lease(store, f"run-{i}", 60))

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    held = [r for r in results if r is not None]
    assert len(results) == 8 and len(held) == 1
    assert json.loads(store.read(coordination.LEASE_KEY))["holder"] == held[0].holder


def test_a_released_lease_can_be_taken_and_an_expired_one_taken_over(tmp_path):
    store = LocalStore(tmp_path)
    first = coordination.acquire_lease(store, "run-1", 60)
    assert coordination.acquire_lease(store, "run-2", 60) is None
    coordination.release_lease(store, first)
    second = coordination.acquire_lease(store, "run-2", 0.2)
    assert second is not None
    time.sleep(0.3)  # run-2 was killed: its lease expires
    third = coordination.acquire_lease(store, "run-3", 60)
    assert third is not None
    coordination.release_lease(store, second)  # the late release of a lost lease is a no-op
    assert json.loads(store.read(coordination.LEASE_KEY))["holder"] == "run-3"


def test_a_finished_claim_is_a_duplicate_and_an_unfinished_one_is_taken_over(tmp_path):
    store = LocalStore(tmp_path)
    assert coordination.take_claim(store, "gcp:s:2026-11-30T02:00Z", "run-1")
    ledger.start_run(store, "run-1", {})
    # run-1 was killed: started, never finished; the next holder of the lease retries.
    assert coordination.take_claim(store, "gcp:s:2026-11-30T02:00Z", "run-2")
    ledger.start_run(store, "run-2", {})
    ledger.finish_run(store, "run-2", {"status": "no_retrain"})
    assert not coordination.take_claim(store, "gcp:s:2026-11-30T02:00Z", "run-3")
    claim, _ = coordination.read_claim(store, "gcp:s:2026-11-30T02:00Z")
    assert claim.run_id == "run-2" and claim.finished
