"""The retrain function's adapters called in-process: Cloud Functions' CloudEvent and HTTP
targets and the Lambda handler reach run_retrain with the right key, and bad requests get
a 4xx naming the field. Deliveries of an already finished key return at once."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import functions_framework
import pytest

from segmentation.store import LocalStore
from training.release import ledger
from training.retrain import coordination

FUNCTIONS = Path(__file__).resolve().parents[1] / "functions"
EVENTS = FUNCTIONS / "events"


def _finished(store: LocalStore, key: str) -> None:
    """Record ``key`` as claimed by a run that finished: a later delivery is a duplicate."""
    coordination.take_claim(store, key, "retrain-earlier")
    ledger.start_run(store, "retrain-earlier", {"kind": "retrain"})
    ledger.finish_run(store, "retrain-earlier", {"status": "no_retrain"})


@pytest.fixture
def store(tmp_path, monkeypatch) -> LocalStore:
    monkeypatch.setenv("SEGMENTATION_MODEL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("SEGMENTATION_DATA", str(tmp_path / "absent.csv"))
    return LocalStore(tmp_path / "store")


def test_a_redelivered_scheduler_message_is_acknowledged_without_a_second_run(store):
    _finished(store, "gcp:segmentation-retrain:2026-11-30T02:00Z")
    client = functions_framework.create_app(
        "retrain", str(FUNCTIONS / "main.py"), signature_type="cloudevent"
    ).test_client()
    event = json.loads((EVENTS / "retrain_pubsub.json").read_text())
    response = client.post(
        "/", json=event, headers={"Content-Type": "application/cloudevents+json"}
    )
    assert response.status_code == 200
    assert [r.run_id for r in ledger.list_runs(store)] == ["retrain-earlier"]


@pytest.mark.parametrize(
    ("method", "headers", "body", "status", "field"),
    [
        ("POST", {}, b'{"force": true}', 400, "Idempotency-Key"),
        ("POST", {"Idempotency-Key": "k"}, b'{"force": "yes"}', 400, "force"),
        ("POST", {"Idempotency-Key": "k"}, b"not json", 400, "body"),
        ("GET", {"Idempotency-Key": "k"}, b"", 405, None),
    ],
)
def test_a_bad_manual_request_gets_a_4xx_naming_the_field(
    store, method, headers, body, status, field
):
    client = functions_framework.create_app(
        "retrain_http", str(FUNCTIONS / "main.py")
    ).test_client()
    response = client.open(
        "/retrain",
        method=method,
        data=body,
        headers={"Content-Type": "application/json", **headers},
    )
    assert response.status_code == status
    assert response.get_json()["error"]["field"] == field
    assert ledger.list_runs(store) == []


def test_a_retried_manual_request_is_a_duplicate_not_a_second_run(store):
    _finished(store, "manual:nightly-fix")
    client = functions_framework.create_app(
        "retrain_http", str(FUNCTIONS / "main.py")
    ).test_client()
    response = client.post(
        "/retrain", data=b'{"force": true}',
        headers={"Content-Type": "application/json", "Idempotency-Key": "nightly-fix"},
    )  # fmt: skip
    assert response.status_code == 200
    assert response.get_json()["outcome"] == "duplicate"


def test_the_lambda_handler_keys_eventbridge_deliveries_by_schedule_and_time(store):
    event = json.loads((EVENTS / "retrain_eventbridge.json").read_text())
    key = "aws:" + event["schedule_arn"] + ":2026-11-30T02:00Z"
    _finished(store, key)
    spec = importlib.util.spec_from_file_location("aws_lambda_retrain", FUNCTIONS / "aws_lambda.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.retrain(event)["outcome"] == "duplicate"
    assert module.retrain({**event, "execution_id": "attempt-2"})["outcome"] == "duplicate"
