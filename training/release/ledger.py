"""The run ledger in the model store: every training run, whatever stops it.

A run writes ``runs/<run_id>/started.json`` before any work and
``runs/<run_id>/finished.json`` with its outcome after; both create-only. A run killed in
between shows as started and never finished. A second ``start`` of the same run id is a
``StoreConflict``: that is how a duplicate run detects itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from segmentation.errors import ConfigError, StoreConflict
from segmentation.store import ModelStore

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,199}$")
STARTED, FINISHED = "started.json", "finished.json"


def _key(run_id: str, name: str) -> str:
    if not _RUN_ID_RE.match(run_id):
        raise ConfigError("run_id: expected letters, digits and ._:+- (at most 200)")
    return f"runs/{run_id}/{name}"


def _write(store: ModelStore, key: str, record: dict) -> None:
    try:
        data = json.dumps(record, indent=2, sort_keys=True, allow_nan=False, default=str)
    except ValueError as exc:
        raise ConfigError(f"run record: not serialisable as strict JSON ({exc})") from None
    store.write_new(key, data.encode())


def start_run(store: ModelStore, run_id: str, record: dict) -> None:
    """Record that ``run_id`` started; ``StoreConflict`` if it was started before."""
    try:
        _write(store, _key(run_id, STARTED), {"status": "started", **record})
    except StoreConflict:
        raise StoreConflict(f"run {run_id} is already recorded (duplicate run)") from None


def finish_run(store: ModelStore, run_id: str, record: dict) -> None:
    """Record the outcome of ``run_id`` (``record["status"]``); written once."""
    try:
        _write(store, _key(run_id, FINISHED), record)
    except StoreConflict:
        raise StoreConflict(f"run {run_id} has finished already") from None


@dataclass(frozen=True)
class RunRecord:
    """One run as the ledger shows it: its start, and its outcome if it finished."""

    run_id: str
    started: dict
    finished: dict | None

    @property
    def status(self) -> str:
        """The outcome's status, or ``started`` for a run that never finished."""
        return str((self.finished or {}).get("status", "started"))


def read_run(store: ModelStore, run_id: str) -> RunRecord | None:
    """One run's records; None when it never started."""
    started, _ = store.read_versioned(_key(run_id, STARTED))
    if started is None:
        return None
    finished, _ = store.read_versioned(_key(run_id, FINISHED))
    return RunRecord(
        run_id, json.loads(started), None if finished is None else json.loads(finished)
    )


def list_runs(store: ModelStore) -> list[RunRecord]:
    """Every run in the ledger, oldest run id first."""
    files: dict[str, set[str]] = {}
    for key in store.list("runs/"):
        parts = key.split("/")
        if len(parts) == 3:
            files.setdefault(parts[1], set()).add(parts[2])
    runs = []
    for run_id in sorted(files):
        if STARTED not in files[run_id]:
            continue  # not this ledger's layout
        started = json.loads(store.read(_key(run_id, STARTED)))
        finished = None
        if FINISHED in files[run_id]:
            finished = json.loads(store.read(_key(run_id, FINISHED)))
        runs.append(RunRecord(run_id, started, finished))
    return runs
