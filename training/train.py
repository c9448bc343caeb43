"""`segmentation train`: features -> fit -> select -> trust -> export + gates -> publish.

Stages: build the dbt features if needed; fit the preprocessing (clustering features,
imputation, clipping, scaling, PCA); choose k and the algorithm and fit the servable
clustering (``training.choose``); assess stability, match segment ids to the current
model, name and explain the segments (``training.trust``); export one graph with the ids
baked in and run every gate. Each stage is logged with its duration (progress on long
runs) and the durations are returned in `TrainResult.stages`.

Export proves before it writes: every gate runs on the in-memory graph, then the bundle
is written (manifest last), re-verified with the serving verifier, and only then does the
pointer move. Every run, passed or failed, is recorded in the store's run ledger.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import onnx

from segmentation import FIELD_NAMES, GateFailed, SegmentationError, Settings
from segmentation.bundle import load_bundle
from segmentation.store import Pointer, open_store

from . import export as ex
from . import manifest as mf
from . import publish
from .fit import fit_model
from .pipeline import TrainingParams
from .report import build_report

log = logging.getLogger(__name__)
FEATURE_TABLE = "customer_features"
STAGED_TABLE = "stg_customers"


@dataclass(frozen=True)
class TrainingData:
    """The training rows, ordered by customer id: DuckDB's features and the staged inputs."""

    customer_ids: np.ndarray  # [N] str
    features: np.ndarray  # [N, F] float64, NULL as NaN
    raw: dict[str, np.ndarray]  # staged column -> [N] float64, NULL as NaN


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


def _has_table(settings: Settings, table: str) -> bool:
    if "://" not in settings.warehouse and not Path(settings.warehouse).exists():
        return False  # no warehouse yet; connecting would create an empty one
    with duckdb.connect(settings.warehouse) as con:
        found = con.execute(
            "select count(*) from information_schema.tables where table_name = ?", [table]
        ).fetchone()
    return bool(found and found[0])


def load_training_data(settings: Settings, feature_names: tuple[str, ...]) -> TrainingData:
    """Read ``customer_features`` and the staged columns of the same customers from DuckDB."""
    # Default configuration: when dbt-duckdb just built the features in this process,
    # DuckDB's instance cache refuses a connection with other settings (read_only).
    with duckdb.connect(settings.warehouse) as con:
        columns = {
            r[0]
            for r in con.execute(
                "select column_name from information_schema.columns where table_name = ?",
                [FEATURE_TABLE],
            ).fetchall()
        }
        missing = sorted(set(feature_names) - columns)
        if missing:
            raise GateFailed(
                f"{FEATURE_TABLE}: the compiled feature SQL returns {missing}, "
                "which the warehouse table lacks; rebuild the features"
            )
        select = ", ".join(
            [f"f.{n}::double as {n}" for n in feature_names]
            + [f"s.{n}::double as raw__{n}" for n in FIELD_NAMES]
        )
        arrays = con.execute(
            f"select f.customer_id::varchar as customer_id, {select} from {FEATURE_TABLE} f "
            f"join {STAGED_TABLE} s using (customer_id) order by f.customer_id"
        ).fetchnumpy()

    def column(name: str) -> np.ndarray:
        return np.ma.filled(np.ma.asarray(arrays[name], dtype=np.float64), np.nan)

    ids = np.asarray(arrays["customer_id"], dtype=str)
    if len(ids) == 0:
        raise GateFailed(f"{FEATURE_TABLE}: expected training rows, found none")
    features = np.column_stack([column(n) for n in feature_names])
    return TrainingData(ids, features, {n: column(f"raw__{n}") for n in FIELD_NAMES})


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
        A gate refused the model; nothing was written except the run ledger entry.
    """
    from .features import build_features, compiled_feature_sql
    from .sql_onnx import compile_features

    started, clock = datetime.now(UTC), time.monotonic()
    store = open_store(settings.model_store)
    run_id = f"train-{started:%Y%m%dT%H%M%S%f}Z"
    record: dict = {"kind": "train", "started_at": started.isoformat(), "params": _params(params)}
    stage = _Stages()
    try:
        if params.rebuild_features or not _has_table(settings, FEATURE_TABLE):
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
        result = ex.export_model(
            compiled, pipeline, data.raw, data.features, params, trust.stable_ids
        )
        stage("manifest, report and publish")
        created_at = datetime.now(UTC)
        model_bytes = _stamp(result.model, created_at)
        version = publish.new_version_id(created_at, publish.sha256_hex(model_bytes))
        manifest = mf.build_manifest(
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
        files = {"model.onnx": model_bytes, "report.html": report}
        manifest_sha = publish.publish_version(store, version, files, manifest)
        # The serving verifier (checksums, signature, golden rows) before the pointer moves.
        load_bundle(store, Pointer(version, manifest_sha, created_at.isoformat()))
        if params.promote:
            publish.promote(store, version)
        stage.done()
    except SegmentationError as exc:
        record.update(status="failed", error=str(exc), finished_at=datetime.now(UTC).isoformat())
        publish.record_run(store, run_id, record)
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
    record.update(
        status="promoted" if params.promote else "published",
        version=version,
        manifest_sha256=manifest_sha,
        rows=outcome.rows,
        metrics=manifest["metrics"],
        stages={k: round(v, 3) for k, v in stage.seconds.items()},
        finished_at=datetime.now(UTC).isoformat(),
    )
    publish.record_run(store, run_id, record)
    return outcome


def _params(params: TrainingParams) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()}
