"""`segmentation train`: features -> fit -> select -> trust -> export + gates -> publish.

Stages: build the dbt features if needed; fit the preprocessing (clustering features,
imputation, clipping, scaling, PCA); choose k and the algorithm and fit the servable
clustering (``training.clustering.choose``); assess stability, match segment ids to the current
model, name and explain the segments (``training.segments.trust``); export one graph with the ids
baked in and run every gate. Each stage is logged with its duration (progress on long
runs) and the durations are returned in `TrainResult.stages`.

Export proves before it writes: every gate runs on the in-memory graph, then the bundle
is written (manifest last), re-verified with the serving verifier, and only then does the
pointer move. Every run is recorded in the store's run ledger (``training.release.ledger``):
started before any work, finished with its outcome, whatever stops it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import onnx

from segmentation import FIELD_NAMES, Settings
from segmentation.bundle import load_bundle
from segmentation.bundle_format import MODEL_FILE, REPORT_FILE, sha256_hex
from segmentation.store import Pointer, open_store
from training.export.gates import export_model
from training.features import (
    FEATURE_MODEL,
    build_features,
    compiled_feature_sql,
    load_training_data,
)
from training.features.warehouse import warehouse_has_table
from training.fit import fit_model
from training.model.params import TrainingParams
from training.release import ledger, publish
from training.release.manifest import build_manifest
from training.release.report import build_report

log = logging.getLogger(__name__)


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


class _Stages:
    """Logs each stage as it starts and records how long it took (progress on long runs)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._name: str | None = None
        self._start = 0.0

    def __call__(self, name: str) -> None:
        self.done()
        log.info("train: %s", name)
        self._name, self._start = name, time.monotonic()

    def done(self) -> None:
        if self._name is not None:
            self.seconds[self._name] = time.monotonic() - self._start
            log.info("train: %s done in %.1fs", self._name, self.seconds[self._name])
        self._name = None


def _stamp(model: onnx.ModelProto, created_at: datetime) -> bytes:
    # The version id ends with the sha256 of these very bytes, so the graph cannot carry
    # it; it carries the id's time part, which with the file's sha256 names the version.
    stamp = f"v{created_at.astimezone(UTC):%Y%m%dT%H%M%S%f}Z"
    props = {p.key: p.value for p in model.metadata_props}
    onnx.helper.set_model_props(model, {**props, "version": stamp, "created_at": stamp[1:]})
    model.producer_name = "customer-segmentation"
    return model.SerializeToString()


def train_and_publish(settings: Settings, params: TrainingParams) -> TrainResult:
    """Train on the warehouse, gate, publish a version and (by default) promote it.

    Parameters
    ----------
    settings : warehouse, model store and data locations.
    params : training knobs; ``rebuild_features`` forces ``dbt build``, ``promote=False``
        publishes without moving the pointer.

    Raises
    ------
    GateFailed
        A gate refused the model; nothing was written except the run ledger's records.
    """
    from training.features.sql_onnx import compile_features

    started, clock = datetime.now(UTC), time.monotonic()
    store = open_store(settings.model_store)
    run_id = f"train-{started:%Y%m%dT%H%M%S%f}Z"
    ledger.start_run(
        store,
        run_id,
        {"kind": "train", "started_at": started.isoformat(), "params": _params(params)},
    )
    stage = _Stages()
    try:
        if params.rebuild_features or not warehouse_has_table(settings.warehouse, FEATURE_MODEL):
            stage("build features with dbt")
            build_features(settings)
        stage("compile the feature SQL and load the training rows")
        compiled = compile_features(
            compiled_feature_sql(settings), FIELD_NAMES, opset=params.target_opset
        )
        names = tuple(compiled.feature_names)
        data = load_training_data(settings, names)
        fitted = fit_model(data, names, params, store, stage)
        pipeline, choice, evaluation, trust = (
            fitted.pipeline, fitted.choice, fitted.evaluation, fitted.trust
        )  # fmt: skip
        stage("export the graph and run the gates")
        result = export_model(compiled, pipeline, data.raw, data.features, params, trust.stable_ids)
        stage("manifest, report and publish")
        created_at = datetime.now(UTC)
        model_bytes = _stamp(result.model, created_at)
        version = publish.new_version_id(created_at, sha256_hex(model_bytes))
        manifest = build_manifest(
            version=version,
            created_at=created_at,
            export=result,
            evaluation=evaluation,
            X=data.features,
            customer_ids=data.customer_ids,
            feature_sql_sha256=compiled.sql_sha256,
            params=params,
            choice=choice,
            trust=trust,
        )
        report = build_report(manifest, evaluation, choice, trust)
        files = {MODEL_FILE: model_bytes, REPORT_FILE: report}
        manifest_sha = publish.publish_version(store, version, files, manifest)
        # The serving verifier (checksums, signature, golden rows) before the pointer moves.
        load_bundle(store, Pointer(version, manifest_sha, created_at.isoformat()))
        if params.promote:
            publish.promote(store, version)
        stage.done()
    except BaseException as exc:  # whatever stops the run (a gate, a bug, Ctrl-C) is recorded
        error = f"{type(exc).__name__}: {exc}"[:500]
        finished = {"status": "failed", "error": error, "finished_at": _now()}
        ledger.finish_run(store, run_id, {**finished, "stages": _rounded(stage.seconds)})
        raise
    outcome = TrainResult(
        version=version,
        manifest_sha256=manifest_sha,
        promoted=params.promote,
        rows=len(data.customer_ids),
        k=choice.clusterer.n_clusters,
        algorithm=choice.spec.algorithm,
        silhouette=evaluation.silhouette,
        stability_ari=trust.stability.ari_mean,
        label_agreement=result.agreement.share,
        store=store.uri,
        seconds=time.monotonic() - clock,
        stages=dict(stage.seconds),
    )
    ledger.finish_run(
        store,
        run_id,
        {
            "status": "promoted" if params.promote else "published",
            "version": version,
            "manifest_sha256": manifest_sha,
            "rows": outcome.rows,
            "metrics": manifest["metrics"],
            "stages": _rounded(stage.seconds),
            "finished_at": _now(),
        },
    )
    return outcome


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _rounded(seconds: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in seconds.items()}


def _params(params: TrainingParams) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()}
