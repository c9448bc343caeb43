"""``run_retrain(trigger)``: the scheduled run, the same for every trigger.

dbt build into a fresh DuckDB file -> abort on a broken feed -> drift against the current
model -> decide -> train a candidate -> gates against the current model -> publish ->
promote. Any failure leaves the served model untouched; every run is in the ledger
(``retrain-*`` records: trigger, key, decision, drift, gates, metrics, outcome).

Outcomes: ``promoted``, ``rejected`` (published, marked, never promoted), ``no_retrain``,
``aborted`` (broken feed: a failed error-level dbt test or too much quarantined), and,
without a ledger record of their own, ``duplicate`` (the key's run already finished) and
``busy`` (another run holds the lease).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from segmentation import FeatureBuildError, ModelContractError, Settings
from segmentation.bundle import Bundle, load_bundle
from segmentation.store import ModelStore, open_store
from training.candidate import Stages, publish_candidate, train_candidate
from training.features import build_features
from training.model.params import TrainingParams
from training.monitoring.check import check_drift
from training.release import ledger, publish, tracking
from training.retrain.coordination import acquire_lease, read_claim, release_lease, take_claim
from training.retrain.faults import Failpoints
from training.retrain.gates import gate_candidate
from training.retrain.trigger import Trigger

log = logging.getLogger(__name__)
#: Exit status of `segmentation retrain` per outcome.
EXIT_STATUS = {"promoted": 0, "no_retrain": 0, "duplicate": 0, "busy": 0, "rejected": 1}


@dataclass(frozen=True)
class RetrainSummary:
    """What one delivery of the schedule did (returned, logged and, for real runs, in the
    ledger)."""

    outcome: str
    trigger: dict
    run_id: str | None = None
    reasons: tuple[str, ...] = ()
    current_version: str | None = None
    version: str | None = None
    drift: dict | None = None
    gates: dict | None = None
    metrics: dict | None = None
    seconds: float = 0.0
    stages: dict = field(default_factory=dict)

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS.get(self.outcome, 2)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "reasons": list(self.reasons)}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _current(store: ModelStore) -> Bundle | None:
    pointer, _ = store.read_pointer()
    if pointer is None:
        return None
    try:
        return load_bundle(store, pointer)
    except ModelContractError as exc:  # serving refuses it too: treat as no model
        log.warning("current model %s does not verify: %s", pointer.version, exc)
        return None


def _decide(trigger: Trigger, current: Bundle | None, drift_level: str | None, settings):
    reasons = []
    if trigger.force:
        reasons.append("forced")
    if current is None:
        reasons.append("no verified current model")
    else:
        created = datetime.fromisoformat(current.manifest.created_at.replace("Z", "+00:00"))
        age_days = (datetime.now(UTC) - created).total_seconds() / 86_400
        if age_days > settings.retrain.max_model_age_days:
            reasons.append(f"model is {age_days:.1f} days old")
    if drift_level == "act":
        reasons.append("act-level drift")
    return reasons


def _run(settings: Settings, store: ModelStore, trigger: Trigger, run_id: str, faults) -> dict:
    clock, stage = time.monotonic(), Stages(on_stage=faults.stage)
    out: dict = {"run_id": run_id, "trigger": trigger.to_dict()}
    with tempfile.TemporaryDirectory(prefix="segmentation-retrain-") as tmp:
        # A fresh warehouse and dbt folders per run: nothing from an earlier run leaks in.
        run = dataclasses.replace(
            settings,
            warehouse=str(Path(tmp) / "run.duckdb"),
            dbt_target_path=str(Path(tmp) / "target"),
            dbt_log_path=str(Path(tmp) / "logs"),
        )
        stage("build features with dbt")
        faults.during_dbt()
        try:
            built = build_features(run, quiet=True)
        except FeatureBuildError as exc:
            return {**out, "outcome": "aborted", "reasons": (f"dbt build: {exc}"[:500],)}
        faults.dbt_done()
        staged, quarantined = built.staged_rows or 0, built.quarantined_rows or 0
        share = quarantined / max(staged + quarantined, 1)
        if share > settings.retrain.max_quarantine_share:
            limit = settings.retrain.max_quarantine_share
            reason = f"quarantined {share:.1%} of rows, above the maximum {limit:.1%}"
            return {**out, "outcome": "aborted", "reasons": (reason,)}
        current = _current(store)
        out["current_version"] = current.version if current else None
        drift_level = None
        if current is not None:
            stage("check drift")
            check = check_drift(run, bundle=current)
            drift_level = check.result.level
            out["drift"] = {
                "check_id": check.check_id,
                "level": drift_level,
                "raw_level": check.result.raw_level,
                "drifting": [s.name for s in check.result.drifting],
            }
        reasons = _decide(trigger, current, drift_level, settings)
        out["reasons"] = tuple(reasons)
        if not reasons:
            return {**out, "outcome": "no_retrain", "seconds": time.monotonic() - clock}
        params = TrainingParams.from_settings(settings, promote=False)
        candidate = train_candidate(run, params, store, stage)
        stage("gates against the current model")
        gates = gate_candidate(candidate, current, settings.retrain, params.seed)
        out.update(version=candidate.version, gates=gates.to_dict())
        out["metrics"] = candidate.manifest["metrics"]
        stage("publish")
        if not gates.passed:
            publish.reject(store, candidate.version, list(gates.reasons), gates.measures)
        publish_candidate(store, candidate, promote=False, after_write=lambda _: faults("upload"))
        if gates.passed:
            faults("promote")
            stage("promote")
            publish.promote(store, candidate.version)
        stage.done()
    outcome = "promoted" if gates.passed else "rejected"
    tracking.log_training_run(settings, candidate, dataclasses.asdict(params), outcome)
    tracking.sync_champion(settings, store)
    return {
        **out,
        "outcome": outcome,
        "seconds": time.monotonic() - clock,
        "stages": stage.rounded(),
    }


def run_retrain(trigger: Trigger, settings: Settings | None = None) -> RetrainSummary:
    """Run the scheduled job once for ``trigger``; exactly one effect per trigger key.

    Returns the summary; raises only on an unexpected failure (recorded in the ledger as
    ``failed``), so the platform retries the delivery.
    """
    settings = settings or Settings.from_env()
    store = open_store(settings.model_store)
    faults = Failpoints(settings.failpoint)
    claim, _ = read_claim(store, trigger.key)
    if claim is not None and claim.finished:
        return _done(RetrainSummary("duplicate", trigger.to_dict(), claim.run_id))
    run_id = f"retrain-{datetime.now(UTC):%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:6]}"
    lease = acquire_lease(store, run_id, settings.retrain.lease_seconds)
    if lease is None:
        return _done(RetrainSummary("busy", trigger.to_dict()))
    try:
        if not take_claim(store, trigger.key, run_id):
            return _done(RetrainSummary("duplicate", trigger.to_dict()))
        ledger.start_run(
            store, run_id, {"kind": "retrain", "trigger": trigger.to_dict(), "started_at": _now()}
        )
        try:
            result = _run(settings, store, trigger, run_id, faults)
        except BaseException as exc:  # recorded whatever it is, then the platform retries
            error = f"{type(exc).__name__}: {exc}"[:500]
            ledger.finish_run(store, run_id, {"status": "failed", "error": error, "at": _now()})
            raise
        summary = RetrainSummary(**result)
        record = {"status": summary.outcome, **summary.to_dict(), "finished_at": _now()}
        ledger.finish_run(store, run_id, record)
        return _done(summary)
    finally:
        release_lease(store, lease)


def _done(summary: RetrainSummary) -> RetrainSummary:
    # Names, versions, counts and timings only: never customer data.
    log.info(
        "retrain %s",
        summary.outcome,
        extra={"json": {"event": "retrain", **summary.to_dict()}},
    )
    return summary
