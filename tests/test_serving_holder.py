"""The model holder: load once, refresh on request after the TTL (never between requests),
swap atomically, refuse bad versions, and answer "not ready" within its bound whatever the
store does."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from fixtures.bundles import GOLDEN_INPUTS, ModelSpec, publish

from segmentation.errors import ModelNotReady
from segmentation.schema import FIELD_NAMES
from segmentation.serving import ModelHolder
from segmentation.store import LocalStore

V2 = ModelSpec(version="v20260102T000000Z-00000002", names=("A", "B", "C", "D"))


def _holder(store, **kwargs) -> ModelHolder:
    kwargs.setdefault("ttl_seconds", 3600)
    kwargs.setdefault("load_wait", 5.0)
    return ModelHolder(lambda: store, **kwargs)


class SlowStore(LocalStore):
    """A store whose every call blocks, like an unreachable bucket."""

    def read_pointer(self):
        time.sleep(30)
        return super().read_pointer()


class CountingStore(LocalStore):
    """Counts pointer reads; ``delay`` makes each read slow once set."""

    reads = 0
    delay = 0.0

    def read_pointer(self):
        self.reads += 1
        time.sleep(self.delay)
        return super().read_pointer()


def _until(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_current_model_is_loaded_on_first_use(model_store):
    holder = _holder(model_store)
    assert holder.get().version == ModelSpec().version
    assert holder.instance_health().ready and holder.store_health().serves_store_version


def test_a_promoted_version_is_swapped_in_while_the_old_one_finishes(model_store):
    holder = _holder(model_store)
    old = holder.get()
    publish(model_store, V2)
    assert holder.refresh() is True
    assert holder.get().version == V2.version
    columns = {
        n: np.array([0.0 if GOLDEN_INPUTS[1][n] is None else GOLDEN_INPUTS[1][n]])
        for n in FIELD_NAMES
    }
    assert old.scorer.score(columns).segment_id.shape == (1,)  # in-flight work still runs


@pytest.mark.parametrize(
    "bad",
    [
        {"stored_model": b"\x80\x04K\x01."},
        {"manifest_edit": lambda d: d["golden_rows"][0].update(segment_id=99)},
    ],
)
def test_a_bad_new_version_is_refused_and_the_old_keeps_serving(model_store, bad):
    holder = _holder(model_store)
    holder.get()
    publish(model_store, V2, **bad)
    assert holder.refresh() is False
    assert holder.get().version == ModelSpec().version
    assert "ModelContractError" in holder.last_error
    assert holder.refresh() is False  # refused versions are remembered, not re-read


@pytest.mark.parametrize("setup", ["no pointer", "bad first version", "factory fails"])
def test_without_a_loadable_model_get_says_not_ready(store, setup):
    if setup == "bad first version":
        publish(store, ModelSpec(), stored_model=b"truncated")

    def factory():
        if setup == "factory fails":
            raise OSError("store unreachable")
        return store

    holder = ModelHolder(factory, ttl_seconds=3600, load_wait=5.0)
    with pytest.raises(ModelNotReady):
        holder.get()
    assert holder.store_health().ready is False
    assert holder.last_error


def test_a_slow_store_gives_not_ready_within_the_load_wait(tmp_path):
    holder = ModelHolder(lambda: SlowStore(tmp_path), ttl_seconds=3600, load_wait=0.3)
    start = time.monotonic()
    with pytest.raises(ModelNotReady):
        holder.get()
    assert 0.25 < time.monotonic() - start < 2.0
    start = time.monotonic()
    assert holder.instance_health().ready is False  # the probe never waits
    assert time.monotonic() - start < 0.1


def test_a_cold_start_waits_for_a_slow_load_instead_of_answering_503(tmp_path):
    store = CountingStore(tmp_path / "store")
    publish(store, ModelSpec())
    store.reads, store.delay = 0, 1.0  # a slow bucket, still well inside the bound
    holder = ModelHolder(lambda: store, ttl_seconds=3600, load_wait=20.0)
    results = []
    threads = [threading.Thread(target=lambda: results.append(holder.get())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert [b.version for b in results] == [ModelSpec().version] * 4
    assert store.reads == 1  # the concurrent first requests shared one load


def test_nothing_reads_the_store_between_requests(tmp_path):
    store = CountingStore(tmp_path / "store")
    publish(store, ModelSpec())
    holder = ModelHolder(lambda: store, ttl_seconds=0.05, load_wait=5.0)
    holder.get()
    reads = store.reads
    time.sleep(0.5)  # ten TTLs without a request: a frozen or throttled instance
    assert store.reads == reads
    publish(store, V2)
    assert holder.get().version == ModelSpec().version  # served at once; the check starts
    assert _until(lambda: holder.get().version == V2.version)
    assert store.reads > reads


def test_a_request_after_the_ttl_is_not_held_up_by_a_slow_store(tmp_path):
    store = CountingStore(tmp_path / "store")
    publish(store, ModelSpec())
    holder = ModelHolder(lambda: store, ttl_seconds=0.0, load_wait=5.0)
    holder.get()
    store.reads, store.delay = 1, 2.0
    start = time.monotonic()
    for _ in range(50):
        assert holder.get().version == ModelSpec().version
    assert time.monotonic() - start < 0.5
    assert _until(lambda: store.reads == 2, 5)  # one check ran, not fifty
    time.sleep(0.1)
    assert store.reads == 2


def test_lambda_init_loads_in_the_caller_and_the_first_request_does_not_wait(model_store):
    holder = _holder(model_store, load_wait=0.0)
    assert holder.load() is True
    assert holder.instance_health().ready
    assert holder.get().version == ModelSpec().version


def test_a_model_appearing_later_is_picked_up_by_the_next_requests(store):
    holder = ModelHolder(lambda: store, ttl_seconds=0.05, load_wait=0.2)
    assert holder.instance_health().ready is False
    publish(store, ModelSpec())
    assert _until(lambda: holder.instance_health().ready, 10)
    assert holder.get().version == ModelSpec().version


def test_store_health_names_a_current_version_that_fails_verification(model_store):
    holder = _holder(model_store, ttl_seconds=0.0)
    holder.get()
    publish(model_store, V2, stored_model=b"truncated")
    health = holder.store_health()
    assert health.store_version == V2.version and health.store_version_refused
    assert health.version == ModelSpec().version  # the instance keeps its verified model
    assert not health.serves_store_version
    publish(model_store, ModelSpec(version="v20260103T000000Z-00000003"))
    health = holder.store_health()
    assert health.serves_store_version and not health.store_version_refused


def test_readers_never_see_a_gap_while_versions_are_promoted(model_store):
    holder = ModelHolder(lambda: model_store, ttl_seconds=0.01, load_wait=5.0)
    holder.get()
    seen, failures, stop = set(), [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                seen.add(holder.get().version)
            except Exception as exc:  # any exception is a gap in service
                failures.append(exc)

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        publish(model_store, V2)
        deadline = time.monotonic() + 10
        while V2.version not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:  # the readers stop even when publishing fails
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert failures == []
    assert seen == {ModelSpec().version, V2.version}
