"""`segmentation drift`: one drift check of the current customers, recorded in the store.

Each check writes ``drift/<check_id>/report.html`` and then ``drift/<check_id>/check.json``
(both create-only, the record last). Persistence (``act`` only after consecutive act-level
checks) is counted from those records, so it survives restarts and works across the
machines that share a store.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from segmentation import ModelNotReady, Settings
from segmentation.bundle import Bundle, load_bundle
from segmentation.store import ModelStore, open_store
from training.features import build_features
from training.monitoring.current import CurrentCounts, current_counts
from training.monitoring.drift import DriftResult, judge, measure
from training.monitoring.report import build_drift_report

#: Exit status of `segmentation drift` per level (2 stays the CLI's status for errors).
EXIT_STATUS = {"none": 0, "warn": 1, "act": 3}
PREFIX = "drift/"
RECORD, REPORT = "check.json", "report.html"
#: Earlier checks read to count persistence: far more than any sensible threshold.
_HISTORY = 50


@dataclass(frozen=True)
class DriftCheck:
    """A recorded drift check."""

    check_id: str
    result: DriftResult
    counts: CurrentCounts
    record_key: str | None
    report_key: str | None

    def to_dict(self) -> dict:
        return {"check_id": self.check_id, "report": self.report_key, **self.result.to_dict()}


def previous_raw_levels(store: ModelStore, version: str) -> list[str]:
    """Raw levels of ``version``'s recorded checks, oldest first."""
    ids = sorted({k.split("/")[1] for k in store.list(PREFIX) if k.endswith(f"/{RECORD}")})
    levels = []
    for check_id in ids[-_HISTORY:]:
        record = json.loads(store.read(f"{PREFIX}{check_id}/{RECORD}"))
        if record.get("model_version") == version:
            levels.append(record["raw_level"])
    return levels


def _current_bundle(store: ModelStore) -> Bundle:
    pointer, _ = store.read_pointer()
    if pointer is None:
        raise ModelNotReady(f"{store.uri}: no current model to check drift against")
    return load_bundle(store, pointer)


def check_drift(
    settings: Settings,
    *,
    data: str | None = None,
    bundle: Bundle | None = None,
    record: bool = True,
) -> DriftCheck:
    """Compare the current customers with the current model's reference distributions.

    Parameters
    ----------
    settings : the warehouse (its ``customer_features`` and ``stg_customers``) and store.
    data : a raw file to check instead: built through dbt into a temporary warehouse.
    bundle : the model to compare against (default: the store's current model).
    record : write the check and its report to the store (persistence counts from these).
    """
    store = open_store(settings.model_store)
    bundle = bundle or _current_bundle(store)
    if data is None:
        counts = current_counts(settings.warehouse, bundle)
    else:
        with tempfile.TemporaryDirectory(prefix="segmentation-drift-") as tmp:
            scratch = dataclasses.replace(
                settings, data=data, warehouse=str(Path(tmp) / "drift.duckdb")
            )
            build_features(scratch, quiet=True)
            counts = current_counts(scratch.warehouse, bundle)
    reference = bundle.manifest.raw["drift_reference"]
    signals = measure(reference, counts, settings.drift)
    history = previous_raw_levels(store, bundle.version) if record else []
    result = judge(bundle.version, counts.rows, signals, history, settings.drift)
    check_id = f"drift-{datetime.now(UTC):%Y%m%dT%H%M%S%f}Z"
    record_key = report_key = None
    if record:
        report_key = f"{PREFIX}{check_id}/{REPORT}"
        record_key = f"{PREFIX}{check_id}/{RECORD}"
        store.write_new(report_key, build_drift_report(check_id, reference, counts, result))
        doc = {"check_id": check_id, "checked_at": datetime.now(UTC).isoformat()}
        doc.update(result.to_dict())
        store.write_new(record_key, json.dumps(doc, indent=2, allow_nan=False).encode())
    return DriftCheck(check_id, result, counts, record_key, report_key)
