"""A candidate model: trained, exported and gated in memory, then published on request.

``train_candidate`` runs every stage up to a complete bundle held in memory (graph,
manifest, report); nothing is written. ``publish_candidate`` writes it as a new
immutable version (manifest last), re-verifies it exactly as serving will, and only then,
if asked, moves the pointer. ``segmentation train`` does both; the scheduled retrain
judges the candidate against the current model in between.

Stages: build the dbt features if needed; fit the preprocessing (clustering features,
imputation, clipping, scaling, PCA); choose k and the algorithm and fit the servable
clustering (``training.clustering.choose``); assess stability, match segment ids to the
current model, name and explain the segments (``training.segments.trust``); export one
graph with the ids baked in and run every gate. Each stage is logged with its duration.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import onnx

from segmentation import FIELD_NAMES, Settings
from segmentation.bundle import load_bundle
from segmentation.bundle_format import MODEL_FILE, REPORT_FILE, SCORING_FILE, sha256_hex
from segmentation.store import ModelStore, Pointer
from training.export.gates import ExportResult, export_model
from training.features import (
    FEATURE_MODEL,
    TrainingData,
    build_features,
    compiled_feature_sql,
    load_training_data,
)
from training.features.warehouse import warehouse_has_table
from training.fit import FittedModel, fit_model
from training.model.params import TrainingParams
from training.release import publish
from training.release.manifest import build_manifest
from training.release.report import build_report

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
    """A gated model in memory: what it was trained on, what it is, what it says."""

    version: str
    created_at: datetime
    model_bytes: bytes
    scoring_bytes: bytes
    manifest: dict
    report: bytes
    data: TrainingData
    fitted: FittedModel
    export: ExportResult


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
    stage("compile the feature SQL and load the training rows")
    compiled = compile_features(
        compiled_feature_sql(settings), FIELD_NAMES, opset=params.target_opset
    )
    names = tuple(compiled.feature_names)
    data = load_training_data(settings, names)
    fitted = fit_model(data, names, params, store, stage)
    stage("export the graph and run the gates")
    exported = export_model(
        compiled, fitted.pipeline, data.raw, data.features, params, fitted.trust.stable_ids
    )
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
        X=data.features,
        customer_ids=data.customer_ids,
        feature_sql_sha256=compiled.sql_sha256,
        params=params,
        choice=fitted.choice,
        trust=fitted.trust,
    )
    report = build_report(manifest, fitted.evaluation, fitted.choice, fitted.trust)
    return Candidate(
        version, created_at, model_bytes, scoring_bytes, manifest, report, data, fitted, exported
    )


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
