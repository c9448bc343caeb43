"""The model holder: load once, refresh on pointer change, swap atomically, refuse bad
versions, and answer "not ready" quickly whatever the store does."""

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
    kwargs.setdefault("poll_seconds", 3600)
    kwargs.setdefault("initial_wait", 5.0)
    return ModelHolder(lambda: store, **kwargs)


class SlowStore(LocalStore):
    """A store whose every call blocks, like an unreachable bucket."""

    def read_pointer(self):
        time.sleep(30)
        return super().read_pointer()


def test_the_current_model_is_loaded_on_first_use(model_store):
    holder = _holder(model_store)
    assert holder.get().version == ModelSpec().version
    assert holder.health().ready


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

    holder = ModelHolder(factory, poll_seconds=3600, initial_wait=5.0)
    with pytest.raises(ModelNotReady):
        holder.get()
    assert holder.health().ready is False
    assert holder.last_error


def test_a_slow_store_gives_not_ready_within_the_initial_wait(tmp_path):
    holder = ModelHolder(lambda: SlowStore(tmp_path), poll_seconds=3600, initial_wait=0.3)
    start = time.monotonic()
    assert holder.health().ready is False
    assert time.monotonic() - start < 2.0


def test_a_model_appearing_later_is_picked_up_by_polling(store):
    holder = ModelHolder(lambda: store, poll_seconds=0.05, initial_wait=0.2)
    assert holder.health().ready is False
    publish(store, ModelSpec())
    deadline = time.monotonic() + 10
    while not holder.health().ready and time.monotonic() < deadline:
        time.sleep(0.05)
    assert holder.get().version == ModelSpec().version
    holder.stop()


def test_readers_never_see_a_gap_while_versions_are_promoted(model_store):
    holder = ModelHolder(lambda: model_store, poll_seconds=0.01, initial_wait=5.0)
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
        holder.stop()
    assert failures == []
    assert seen == {ModelSpec().version, V2.version}
