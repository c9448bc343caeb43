"""The scheduled run end to end on generated customers: first model, no retrain, duplicate
deliveries, a rejected candidate, a broken feed, and the process killed at each fault
point (after which the served model is unchanged and the next run succeeds)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segmentation import Settings, StoreConflict
from segmentation.config import RetrainPolicy
from segmentation.store import open_store
from training.data import write_customers
from training.release import ledger, publish
from training.retrain import run_retrain
from training.retrain.faults import POINTS
from training.retrain.trigger import from_cli

pytestmark = pytest.mark.slow
ROWS = 3_000
#: Small, fast training for these tests; the lease expires quickly after a kill.
FAST = {"SEGMENTATION_SELECT": "false", "SEGMENTATION_K": "4"}
LONG_LEASE = {"SEGMENTATION_RETRAIN_LEASE_SECONDS": "300"}


def _settings(root: Path, data: Path, store: Path, **changes) -> Settings:
    base = Settings(
        data=str(data),
        warehouse=str(root / "unused.duckdb"),
        model_store=str(store),
        select=False,
        k=4,
        dbt_target_path=str(root / "target"),
        dbt_log_path=str(root / "logs"),
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def first_model(tmp_path_factory):
    """A store whose first model was trained and promoted by a retrain run."""
    root = tmp_path_factory.mktemp("retrain")
    write_customers(root / "customers.csv", ROWS, seed=1)
    write_customers(root / "dirty.csv", ROWS, seed=2, dirty_fraction=0.2)
    settings = _settings(root, root / "customers.csv", root / "store")
    summary = run_retrain(from_cli("first", force=False), settings)
    return root, settings, summary


def _copy_store(root: Path, name: str) -> Path:
    target = root / name
    shutil.copytree(root / "store", target, ignore=shutil.ignore_patterns("lease.json"))
    return target


def test_the_first_run_trains_and_promotes_a_first_model(first_model):
    _, settings, summary = first_model
    assert summary.outcome == "promoted"
    assert "no verified current model" in summary.reasons
    store = open_store(settings.model_store)
    assert store.read_pointer()[0].version == summary.version
    record = ledger.read_run(store, summary.run_id)
    assert record.status == "promoted" and record.started["trigger"]["key"] == "cli:first"


def test_a_second_delivery_of_the_same_key_is_a_duplicate(first_model):
    _root, settings, summary = first_model
    again = run_retrain(from_cli("first", force=True), settings)
    assert again.outcome == "duplicate" and again.run_id == summary.run_id
    keys = [r.started["trigger"]["key"] for r in ledger.list_runs(open_store(settings.model_store))]
    assert keys.count("cli:first") == 1


def test_no_drift_and_a_young_model_mean_no_retrain(first_model):
    root, settings, summary = first_model
    store_path = _copy_store(root, "store-quiet")
    result = run_retrain(
        from_cli("quiet", False), dataclasses.replace(settings, model_store=str(store_path))
    )
    assert result.outcome == "no_retrain" and result.reasons == ()
    assert result.drift["level"] == "none"
    assert open_store(str(store_path)).read_pointer()[0].version == summary.version


def test_a_candidate_failing_a_gate_is_published_rejected_and_never_promoted(first_model):
    root, settings, summary = first_model
    store_path = _copy_store(root, "store-reject")
    strict = dataclasses.replace(
        settings,
        model_store=str(store_path),
        retrain=RetrainPolicy(min_segment_share=0.9),
    )
    result = run_retrain(from_cli("strict", force=True), strict)
    assert result.outcome == "rejected" and result.exit_status == 1
    assert any("smallest segment" in r for r in result.gates["reasons"])
    store = open_store(str(store_path))
    assert store.read_pointer()[0].version == summary.version
    info = {i.version: i for i in publish.list_versions(store)}[result.version]
    assert info.complete and info.rejected and not info.is_current
    with pytest.raises(StoreConflict, match="rejected"):
        publish.promote(store, result.version)


def test_a_broken_feed_aborts_before_training(first_model):
    root, settings, summary = first_model
    store_path = _copy_store(root, "store-dirty")
    dirty = dataclasses.replace(settings, data=str(root / "dirty.csv"), model_store=str(store_path))
    result = run_retrain(from_cli("dirty", force=True), dirty)
    assert result.outcome == "aborted" and "quarantined 20.0% of rows" in result.reasons[0]
    store = open_store(str(store_path))
    assert store.read_pointer()[0].version == summary.version
    assert len(publish.list_versions(store)) == 1


def _cli(root: Path, store: Path, *args: str, **env: str) -> subprocess.Popen:
    environment = {
        **os.environ,
        **FAST,
        "SEGMENTATION_DATA": str(root / "customers.csv"),
        "SEGMENTATION_MODEL_STORE": str(store),
        "SEGMENTATION_RETRAIN_LEASE_SECONDS": "2",
        **env,
    }
    command = [sys.executable, "-m", "training.cli", "retrain", "--json", *args]
    return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> tuple[int, dict | None]:
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, json.loads(out) if out.strip() else None


@pytest.mark.parametrize("point", POINTS)
def test_a_run_killed_at_a_fault_point_changes_nothing_and_the_next_run_succeeds(
    first_model, point
):
    root, _, summary = first_model
    store_path = _copy_store(root, f"store-kill-{point}")
    code, _ = _finish(
        _cli(root, store_path, "--force", "--key", "k1", SEGMENTATION_FAILPOINT=point)
    )
    assert code == -9  # SIGKILL: no cleanup ran
    store = open_store(str(store_path))
    assert store.read_pointer()[0].version == summary.version
    runs = ledger.list_runs(store)
    killed = [r for r in runs if r.started["trigger"]["key"] == "cli:k1"]
    assert len(killed) == 1 and killed[0].status == "started"
    versions = publish.list_versions(store)
    half = [v for v in versions if v.version != summary.version]
    if point in ("dbt", "fit"):
        assert half == []
    elif point == "upload":
        assert len(half) == 1 and not half[0].complete  # no manifest: never promotable
        with pytest.raises(Exception, match=r"incompletely published|no manifest"):
            publish.promote(store, half[0].version)
    else:  # published and verified, the pointer never moved
        assert len(half) == 1 and half[0].complete and not half[0].is_current
    models = subprocess.run(
        [sys.executable, "-m", "training.cli", "models", "list"],
        env={**os.environ, "SEGMENTATION_MODEL_STORE": str(store_path)},
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert f"* {summary.version}" in models or f"*  {summary.version}" in models
    time.sleep(2.2)  # the killed run's lease expires
    code, result = _finish(_cli(root, store_path, "--force", "--key", "k1"))
    assert code == 0 and result["outcome"] == "promoted"  # the same key, retried after a crash
    assert store.read_pointer()[0].version == result["version"]
    report = store.read(f"versions/{result['version']}/report.html").decode()
    assert 'alt="Migration matrix"' in report  # the current model's customers, moved


def test_concurrent_deliveries_of_one_key_train_once(first_model):
    root, _, _ = first_model
    store_path = _copy_store(root, "store-concurrent")
    # A lease that outlasts the run (the default is an hour; the fault tests use 2 s).
    procs = [_cli(root, store_path, "--force", "--key", "same", **LONG_LEASE) for _ in range(2)]
    outcomes = sorted(_finish(p)[1]["outcome"] for p in procs)
    assert outcomes in (["busy", "promoted"], ["duplicate", "promoted"])
    runs = ledger.list_runs(open_store(str(store_path)))
    assert [r.status for r in runs if r.started["trigger"]["key"] == "cli:same"] == ["promoted"]


def test_an_overlapping_run_with_another_key_exits_busy(first_model):
    root, _, _ = first_model
    store_path = _copy_store(root, "store-overlap")
    first = _cli(root, store_path, "--force", "--key", "a", **LONG_LEASE)
    lease = store_path / "lease.json"
    deadline = time.monotonic() + 60
    while not (lease.exists() and b'"released"' not in lease.read_bytes()):
        assert time.monotonic() < deadline and first.poll() is None, "first run took no lease"
        time.sleep(0.1)
    second = _finish(_cli(root, store_path, "--force", "--key", "b", **LONG_LEASE))
    assert second == (0, second[1]) and second[1]["outcome"] == "busy"
    assert _finish(first)[1]["outcome"] == "promoted"
