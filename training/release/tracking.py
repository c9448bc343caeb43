"""Optional MLflow tracking: each training run logged, the ``champion`` alias on the
registered model following the store's pointer (promotion and rollback).

Active only when ``MLFLOW_TRACKING_URI`` is set (``Settings.mlflow_tracking_uri``) and
the ``mlflow`` extra is installed; the model store stays the source of truth for what is
served, MLflow mirrors it for people who browse experiments there. Serving never imports
MLflow.
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import onnx

from segmentation import Settings
from segmentation.store import ModelStore

log = logging.getLogger(__name__)
REGISTERED_MODEL = "customer-segmentation"
CHAMPION = "champion"
EXPERIMENT = "customer-segmentation"
VERSION_TAG = "segmentation_version"
_URI_VARIABLE = "MLFLOW_TRACKING_URI"


def _tolerant(action):
    """MLflow mirrors the store: a tracking server that is down must not fail a run."""

    def run(*args, **kwargs):
        try:
            return action(*args, **kwargs)
        except Exception as exc:  # any client, network or server error
            log.warning("MLflow %s failed: %s", action.__name__, type(exc).__name__)
            return None

    return run


@contextmanager
def _mlflow(settings: Settings):
    """MLflow's fluent API pointed at the settings' tracking URI for the duration only.

    ``mlflow.set_tracking_uri`` is process-global and also writes ``MLFLOW_TRACKING_URI``
    into ``os.environ`` (for subprocesses); both are put back as they were, so no later
    ``Settings.from_env()`` in this process sees a tracking URI nobody configured.
    """
    import mlflow

    before = os.environ.get(_URI_VARIABLE)
    try:
        with warnings.catch_warnings():
            # MLflow warns about optional extras (signatures, input examples) we do not use.
            warnings.simplefilter("ignore")
            mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
            yield mlflow
    finally:
        mlflow.set_tracking_uri(None)
        if before is None:
            os.environ.pop(_URI_VARIABLE, None)
        else:
            os.environ[_URI_VARIABLE] = before


def _experiment(mlflow, uri: str) -> None:
    """Use the project's experiment; created with its artifacts beside a SQLite tracking
    database (MLflow's default for a database URI is ``./mlruns`` in whatever folder the
    process runs in)."""
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        location = None
        if uri.startswith("sqlite:///"):
            database = Path(uri.removeprefix("sqlite:///"))
            location = (database.parent / f"{database.stem}-artifacts").resolve().as_uri()
        mlflow.create_experiment(EXPERIMENT, artifact_location=location)
    mlflow.set_experiment(EXPERIMENT)


@_tolerant
def log_training_run(settings: Settings, candidate, params: dict, status: str) -> str | None:
    """Log one run (parameters, metrics, the ONNX model, the report) and register the
    model as a new version tagged with the store's version id; returns the MLflow run id.

    ``candidate`` is a ``training.candidate.Candidate`` (its version, model bytes,
    manifest and report are read).
    """
    if not settings.mlflow_tracking_uri:
        return None
    with _mlflow(settings) as mlflow:
        _experiment(mlflow, settings.mlflow_tracking_uri)
        version, manifest = candidate.version, candidate.manifest
        with mlflow.start_run(run_name=version) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            numeric = {
                k: float(v) for k, v in manifest["metrics"].items() if isinstance(v, int | float)
            }
            mlflow.log_metrics(numeric)
            mlflow.set_tags({VERSION_TAG: version, "status": status,
                             "data_snapshot_sha256": manifest["data_snapshot_sha256"]})  # fmt: skip
            mlflow.log_text(candidate.report.decode(), "report.html")
            info = mlflow.onnx.log_model(
                onnx.load_from_string(candidate.model_bytes),
                name="model",
                registered_model_name=REGISTERED_MODEL,
            )
            client = mlflow.MlflowClient()
            client.set_model_version_tag(
                REGISTERED_MODEL, str(info.registered_model_version), VERSION_TAG, version
            )
            return run.info.run_id


@_tolerant
def sync_champion(settings: Settings, store: ModelStore) -> str | None:
    """Point the ``champion`` alias at the registered version the store serves; returns
    that MLflow model version, or None (no tracking, no pointer, or never logged)."""
    if not settings.mlflow_tracking_uri:
        return None
    pointer, _ = store.read_pointer()
    if pointer is None:
        return None
    with _mlflow(settings) as mlflow:
        client = mlflow.MlflowClient()
        found = client.search_model_versions(
            f"name = '{REGISTERED_MODEL}' and tags.{VERSION_TAG} = '{pointer.version}'"
        )
        if not found:
            log.warning("MLflow has no model version for %s", pointer.version)
            return None
        number = str(found[0].version)
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, number)
        return number
