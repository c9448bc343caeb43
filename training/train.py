"""`segmentation train`: train a candidate, publish it, and (by default) promote it.

Export proves before it writes: every gate runs on the in-memory graph
(``training.candidate``), then the bundle is written (manifest last), re-verified with the
serving verifier, and only then does the pointer move. Every run is recorded in the
store's run ledger (``training.release.ledger``): started before any work, finished with
its outcome, whatever stops it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from segmentation import Settings
from segmentation.store import open_store
from training.candidate import Stages, publish_candidate, train_candidate
from training.model.params import TrainingParams
from training.release import ledger, tracking


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced; ``promoted`` is False with ``--no-promote``."""

    version: str
    manifest_sha256: str
    promoted: bool
    rows: int
    k: int
    algorithm: str
    silhouette: float
    stability_ari: float
    label_agreement: float
    store: str
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds

    def summary(self) -> str:
        state = "promoted to current" if self.promoted else "published (not promoted)"
        return (
            f"version {self.version} {state} in {self.store}: {self.rows} customers, "
            f"{self.algorithm} k={self.k}, silhouette {self.silhouette:.3f}, bootstrap ARI "
            f"{self.stability_ari:.3f}, segment ids equal scikit-learn's on "
            f"{self.label_agreement:.4%} of rows, {self.seconds:.1f}s"
        )


def train_and_publish(
    settings: Settings, params: TrainingParams, on_stage: Callable[[str], None] | None = None
) -> TrainResult:
    """Train on the warehouse, gate, publish a version and (by default) promote it.

    Parameters
    ----------
    settings : warehouse, model store and data locations.
    params : training knobs; ``rebuild_features`` forces ``dbt build``, ``promote=False``
        publishes without moving the pointer.
    on_stage : called with each stage's name as it starts (the command's progress line).

    Raises
    ------
    GateFailed
        A gate refused the model; nothing was written except the run ledger's records.
    """
    started, clock = datetime.now(UTC), time.monotonic()
    store = open_store(settings.model_store)
    run_id = f"train-{started:%Y%m%dT%H%M%S%f}Z"
    ledger.start_run(
        store,
        run_id,
        {"kind": "train", "started_at": started.isoformat(), "params": _params(params)},
    )
    stage = Stages(on_stage)
    try:
        candidate = train_candidate(settings, params, store, stage)
        stage("publish")
        manifest_sha = publish_candidate(store, candidate, promote=params.promote)
        stage.done()
        status = "promoted" if params.promote else "published"
        tracking.log_training_run(settings, candidate, _params(params), status)
        if params.promote:
            tracking.sync_champion(settings, store)
    except BaseException as exc:  # whatever stops the run (a gate, a bug, Ctrl-C) is recorded
        error = f"{type(exc).__name__}: {exc}"[:500]
        finished = {"status": "failed", "error": error, "finished_at": _now()}
        ledger.finish_run(store, run_id, {**finished, "stages": stage.rounded()})
        raise
    fitted, manifest = candidate.fitted, candidate.manifest
    outcome = TrainResult(
        version=candidate.version,
        manifest_sha256=manifest_sha,
        promoted=params.promote,
        rows=candidate.rows,
        k=fitted.choice.clusterer.n_clusters,
        algorithm=fitted.choice.spec.algorithm,
        silhouette=fitted.evaluation.silhouette,
        stability_ari=fitted.trust.stability.ari_mean,
        label_agreement=candidate.export.agreement.share,
        store=store.uri,
        seconds=time.monotonic() - clock,
        stages=dict(stage.seconds),
    )
    ledger.finish_run(
        store,
        run_id,
        {
            "status": status,
            "version": candidate.version,
            "manifest_sha256": manifest_sha,
            "rows": outcome.rows,
            "metrics": manifest["metrics"],
            "stages": stage.rounded(),
            "finished_at": _now(),
        },
    )
    return outcome


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _params(params: TrainingParams) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()}
