"""MLflow, optional: with a (local SQLite) tracking URI every training run is logged and
the registered model's ``champion`` alias follows promotion and rollback."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
from fixtures.workspace import workspace_settings

from segmentation import Settings
from segmentation.store import open_store
from training.cli import main
from training.data import write_customers
from training.model.params import TrainingParams
from training.release import tracking
from training.train import train_and_publish

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is part of make install")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    write_customers(root / "customers.csv", 2_000, seed=4)
    settings = workspace_settings(
        root, root / "customers.csv", mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}"
    )
    params = TrainingParams(seed=3, select=False, k=4, stability_boot=2)
    first = train_and_publish(settings, params)
    second = train_and_publish(settings, dataclasses.replace(params, seed=5))
    return settings, first, second


def _client(settings: Settings):
    # Explicit URI: the global one (mlflow.set_tracking_uri) would leak into later tests.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)


def _champion(settings: Settings) -> str:
    client = _client(settings)
    champion = client.get_model_version_by_alias(tracking.REGISTERED_MODEL, tracking.CHAMPION)
    return champion.tags[tracking.VERSION_TAG]


def test_each_training_run_is_logged_with_parameters_metrics_model_and_report(tracked):
    settings, first, second = tracked
    client = _client(settings)
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    by_version = {r.data.tags[tracking.VERSION_TAG]: r for r in runs}
    assert set(by_version) == {first.version, second.version}
    run = by_version[first.version]
    assert run.data.params["k"] == "4" and run.data.params["seed"] == "3"
    assert run.data.metrics["silhouette"] == pytest.approx(first.silhouette)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "report.html" in artifacts
    versions = client.search_model_versions(f"name = '{tracking.REGISTERED_MODEL}'")
    assert {v.tags[tracking.VERSION_TAG] for v in versions} == {first.version, second.version}


def test_the_champion_alias_follows_promotion_and_rollback(tracked, monkeypatch):
    settings, first, second = tracked
    assert _champion(settings) == second.version
    monkeypatch.setenv("SEGMENTATION_MODEL_STORE", settings.model_store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    assert main(["models", "rollback"]) == 0
    assert open_store(settings.model_store).read_pointer()[0].version == first.version
    assert _champion(settings) == first.version
    assert main(["models", "promote", second.version, "--allow-older"]) == 0
    assert _champion(settings) == second.version


def test_tracking_leaves_no_tracking_uri_behind_in_the_process(tracked):
    import os

    settings, _, _ = tracked
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow.get_tracking_uri() != settings.mlflow_tracking_uri


def test_an_unreachable_tracking_server_does_not_fail_training(tracked, monkeypatch):
    settings, _, _ = tracked
    # MLflow's own client settings: fail fast instead of retrying for minutes.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    broken = dataclasses.replace(settings, mlflow_tracking_uri="http://127.0.0.1:9")
    assert tracking.sync_champion(broken, open_store(settings.model_store)) is None
