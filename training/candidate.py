"""A candidate model: trained, exported and gated in memory, then published on request.

``train_candidate`` runs every stage up to a complete bundle held in memory (graph,
manifest, report); nothing is written. ``publish_candidate`` writes it as a new
immutable version (manifest last), re-verifies it exactly as serving will, and only then,
if asked, moves the pointer. ``segmentation train`` does both; the scheduled retrain
judges the candidate against the current model in between.

Stages: build the dbt features if needed; read a seeded sample of the customers
(``training.model.sampling``); fit the preprocessing (clustering features, imputation,
clipping, scaling, PCA); choose k and the algorithm and fit the servable clustering
(``training.clustering.choose``); assess stability, match segment ids to the current
model, name and explain the segments (``training.segments.trust``); export one graph with
the ids baked in and run every gate on every row, in one streamed pass that also counts
the segments, profiles and drift reference of every customer; hash the data snapshot.
Each stage is logged with its duration. Memory is bounded by the sample and a chunk of
rows (``training.features.rows``), whatever the number of customers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import onnx

from segmentation import FIELD_NAMES, Settings
from segmentation.bundle import load_bundle
from segmentation.bundle_format import MODEL_FILE, REPORT_FILE, SCORING_FILE, sha256_hex
from segmentation.store import ModelStore, Pointer
from training.export.gates import ExportResult, ScoredChunk, export_model
from training.export.join import FeatureGraph
from training.features import FEATURE_MODEL, TrainingData, build_features, compiled_feature_sql
from training.features.rows import WarehouseRows
from training.features.warehouse import warehouse_has_table
from training.fit import FittedModel, complete_fit, fit_model
from training.model.params import TrainingParams
from training.model.sampling import TRAINING_SAMPLE_ROWS
from training.release import publish
from training.release.manifest import build_manifest
from training.release.reference import DriftCounts, SnapshotJob
from training.release.report import build_report
from training.segments.population import Population, PopulationStats
from training.segments.trust import IdMigration

log = logging.getLogger(__name__)


class Stages:
    """Logs each stage as it starts and records how long it took (progress on long runs).

    ``on_stage`` is called with each stage's name as it starts (the scheduled run's fault
    points hook in there).
    """

    def __init__(self, on_stage: Callable[[str], None] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self._name: str | None = None
        self._start = 0.0
        self._on_stage = on_stage

    def __call__(self, name: str) -> None:
        self.done()
        log.info("train: %s", name)
        if self._on_stage is not None:
            self._on_stage(name)
        self._name, self._start = name, time.monotonic()

    def done(self) -> None:
        if self._name is not None:
            self.seconds[self._name] = time.monotonic() - self._start
            log.info("train: %s done in %.1fs", self._name, self.seconds[self._name])
        self._name = None

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.seconds.items()}


@dataclass(frozen=True)
class Candidate:
    """A gated model in memory: what it was trained on, what it is, what it says.

    ``data`` is the seeded training sample the model was fitted on (and
    ``fitted.evaluation``'s labels and embedding are that sample's); ``population`` is
    every training row's segment statistics, which the manifest reports.
    """

    version: str
    created_at: datetime
    model_bytes: bytes
    scoring_bytes: bytes
    manifest: dict
    report: bytes
    data: TrainingData
    fitted: FittedModel
    export: ExportResult
    population: Population

    @property
    def rows(self) -> int:
        """Every training row, not only the sample's."""
        return self.population.rows


def _stamp(model: onnx.ModelProto, created_at: datetime) -> bytes:
    # The version id ends with the sha256 of these very bytes, so the graph cannot carry
    # it; it carries the id's time part, which with the file's sha256 names the version.
    stamp = f"v{created_at.astimezone(UTC):%Y%m%dT%H%M%S%f}Z"
    props = {p.key: p.value for p in model.metadata_props}
    onnx.helper.set_model_props(model, {**props, "version": stamp, "created_at": stamp[1:]})
    model.producer_name = "customer-segmentation"
    return model.SerializeToString()


def train_candidate(
    settings: Settings, params: TrainingParams, store: ModelStore, stage: Stages
) -> Candidate:
    """Train on the warehouse and pass every export gate; nothing is written.

    ``store`` is read only: its current model, if any, anchors the segment ids.

    Raises
    ------
    GateFailed
        A gate refused the model.
    """
    from training.features.sql_onnx import compile_features

    if params.rebuild_features or not warehouse_has_table(settings.warehouse, FEATURE_MODEL):
        stage("build features with dbt")
        build_features(settings)
    stage("compile the feature SQL and load the training sample")
    compiled = compile_features(
        compiled_feature_sql(settings), FIELD_NAMES, opset=params.target_opset
    )
    names = tuple(compiled.feature_names)
    rows = WarehouseRows(settings, names)
    sample = rows.sample(TRAINING_SAMPLE_ROWS, params.seed)
    snapshot = SnapshotJob(names, rows)  # hashed in the background while the model fits
    try:
        fitted = fit_model(sample, names, params, store, stage)
        stage(f"export the graph and run the gates on all {rows.rows:,} rows")
        exported, everyone, drift, migration = _export(compiled, fitted, rows, sample, params)
        stage("hash the data snapshot")
        snapshot_sha256 = snapshot.result()
    finally:
        snapshot.cancel()
    fitted = complete_fit(fitted, everyone, params, migration)
    stage("manifest and report")
    created_at = datetime.now(UTC)
    model_bytes = _stamp(exported.model, created_at)
    scoring_bytes = _stamp(exported.scoring_model, created_at)
    version = publish.new_version_id(created_at, sha256_hex(model_bytes))
    manifest = build_manifest(
        version=version,
        created_at=created_at,
        export=exported,
        evaluation=fitted.evaluation,
        population=everyone,
        drift=drift.reference(fitted.evaluation.atypical_distance),
        data_snapshot_sha256=snapshot_sha256,
        sample_rows=sample.rows,
        feature_sql_sha256=compiled.sql_sha256,
        params=params,
        choice=fitted.choice,
        trust=fitted.trust,
    )
    report = build_report(manifest, fitted.evaluation, fitted.choice, fitted.trust)
    return Candidate(
        version,
        created_at,
        model_bytes,
        scoring_bytes,
        manifest,
        report,
        sample,
        fitted,
        exported,
        everyone,
    )


def _export(
    compiled: FeatureGraph,
    fitted: FittedModel,
    rows: WarehouseRows,
    sample: TrainingData,
    params: TrainingParams,
) -> tuple[ExportResult, Population, DriftCounts, IdMigration | None]:
    """Export and gate on every row; the same pass counts each customer's segment and
    profile, the drift reference and (given a current model) who keeps their id."""
    names = tuple(compiled.feature_names)
    population = PopulationStats(fitted.choice.clusterer.n_clusters, names)
    drift = DriftCounts(sample.features, names, params.drift_bins)
    scorer = fitted.trust.current_scorer
    migration = None if scorer is None else IdMigration(scorer, fitted.trust.stable_ids)

    def observe(chunk: ScoredChunk) -> None:
        population.add(chunk.rows.features, chunk.labels, chunk.distances)
        nearest = chunk.graph["distances"].min(axis=1, initial=np.inf)
        drift.add(chunk.rows.features, chunk.graph["segment_id"], nearest)
        if migration is not None:
            migration.add(chunk.rows.raw, chunk.labels)

    exported = export_model(
        compiled,
        fitted.pipeline,
        rows,
        params,
        fitted.trust.stable_ids,
        sample=sample,
        observers=(observe,),
    )
    return exported, population.result(), drift, migration


def publish_candidate(
    store: ModelStore,
    candidate: Candidate,
    *,
    promote: bool,
    after_write: Callable[[str], None] | None = None,
) -> str:
    """Write ``candidate`` as a new version, verify it as serving does, then (if
    ``promote``) move the pointer. Returns the manifest's sha256.

    ``after_write`` is called with each file name once that file is in the store.
    """
    files = {
        MODEL_FILE: candidate.model_bytes,
        SCORING_FILE: candidate.scoring_bytes,
        REPORT_FILE: candidate.report,
    }
    manifest_sha = publish.publish_version(
        store, candidate.version, files, candidate.manifest, after_write=after_write
    )
    # The serving verifier (checksums, signature, golden rows) before the pointer moves.
    pointer = Pointer(candidate.version, manifest_sha, candidate.created_at.isoformat())
    load_bundle(store, pointer, full_graph=True)
    if promote:
        publish.promote(store, candidate.version)
    return manifest_sha
