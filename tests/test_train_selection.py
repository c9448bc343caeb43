"""Selection, surrogates, stability and stable ids wired into training.

Fast tests call `training.choose.choose_and_fit` on blobs of known k. The slow ones train
through `train_and_publish` on generated customers (dbt build, fit, export, gates): k and
algorithm selected vs fixed, the agglomerative surrogate served by the graph, and ids
kept across two trainings on resampled data in one store.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from segmentation import Settings
from segmentation.bundle import load_bundle
from segmentation.store import open_store, version_key
from training import candidate as candidate_module
from training import export as ex
from training import train as tr
from training.clustering.choose import choose_and_fit
from training.data import write_customers
from training.model.params import TrainingParams
from training.model.steps import CentroidAssigner


@pytest.mark.parametrize(("k", "seed"), [(3, 0), (5, 1)])
def test_selection_recovers_the_known_k_of_separated_blobs(k, seed):
    Z, truth = make_blobs(2_000, n_features=3, centers=k, cluster_std=0.6, random_state=seed)
    choice = choose_and_fit(Z, TrainingParams(seed=seed, selection_boot=3))
    assert choice.selection is not None and not choice.selection.k_fixed
    assert choice.spec.n_clusters == k and choice.clusterer.n_clusters == k
    assert choice.served_as == "kmeans" and choice.surrogate_agreement == 1.0
    assert adjusted_rand_score(truth, choice.clusterer.predict(Z)) > 0.99


@pytest.mark.parametrize(
    ("k", "algorithm", "served_as"),
    [(5, "kmeans", "kmeans"), (3, "agglomerative", "nearest_centroid_surrogate")],
)
def test_fixed_k_and_algorithm_skip_the_sweep_and_fit_what_was_asked(k, algorithm, served_as):
    Z, _ = make_blobs(1_500, n_features=3, centers=3, random_state=2)
    choice = choose_and_fit(Z, TrainingParams(k=k, algorithm=algorithm, seed=2))
    assert choice.selection is None
    assert len(np.unique(choice.clusterer.predict(Z))) == k
    assert (choice.spec.algorithm, choice.clusterer.n_clusters, choice.served_as) == (
        algorithm,
        k,
        served_as,
    )


def ward_surrogate(Z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ward labels on ``Z`` and the means of its clusters (the oracle)."""
    labels = AgglomerativeClustering(k, linkage="ward").fit_predict(Z)
    return labels, np.array([Z[labels == c].mean(axis=0) for c in range(k)])


def in_order_of(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Index into ``want`` of the centre nearest each row of ``got`` (a permutation)."""
    order = np.linalg.norm(got[:, None] - want[None], axis=2).argmin(axis=1)
    assert sorted(order.tolist()) == list(range(len(want)))
    return order


def test_an_agglomerative_choice_is_served_by_its_nearest_centroid_surrogate():
    Z, _ = make_blobs(1_500, n_features=4, centers=4, cluster_std=3.0, random_state=3)
    choice = choose_and_fit(Z, TrainingParams(k=4, algorithm="agglomerative", seed=3))
    labels, means = ward_surrogate(Z, 4)
    assert isinstance(choice.clusterer, CentroidAssigner)
    served = choice.clusterer.cluster_centers_
    np.testing.assert_allclose(served, means[in_order_of(served, means)])
    nearest = np.linalg.norm(Z[:, None] - means[None], axis=2).argmin(axis=1)
    assert choice.surrogate_agreement == pytest.approx(np.mean(nearest == labels))
    assert 0.9 <= choice.surrogate_agreement < 1.0  # overlapping blobs: not every row


# --- end to end through train_and_publish ------------------------------------------------


def _settings(root: Path, rows: int, seed: int, store: Path) -> Settings:
    data = root / "customers.csv"
    write_customers(data, rows, seed=seed)
    return Settings(
        data=str(data),
        warehouse=str(root / "wh.duckdb"),
        model_store=str(store),
        dbt_target_path=str(root / "target"),
        dbt_log_path=str(root / "logs"),
    )


def _manifest(settings: Settings, version: str) -> dict:
    store = open_store(settings.model_store)
    return json.loads(store.read(version_key(version, "manifest.json")))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Generated customers with features built once; each test brings its own store."""
    root = tmp_path_factory.mktemp("selection")
    with pytest.MonkeyPatch.context() as mp:
        settings = _settings(root, 3_000, seed=21, store=root / "unused")
        from training.features import build_features

        build_features(settings)
        yield settings, mp


def _in_store(settings: Settings, store: Path) -> Settings:
    return dataclasses.replace(settings, model_store=str(store))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("params", "selected"),
    [
        (TrainingParams(seed=4, selection_boot=3, stability_boot=5), True),
        (TrainingParams(k=3, algorithm="kmeans", seed=4, stability_boot=5), False),
    ],
    ids=["selected", "fixed"],
)
def test_training_selects_unless_k_and_algorithm_are_fixed(workspace, tmp_path, params, selected):
    settings = _in_store(workspace[0], tmp_path / "store")
    result = tr.train_and_publish(settings, params)
    manifest = _manifest(settings, result.version)
    assert (manifest["selection"] is not None) is selected
    if selected:
        chosen = manifest["selection"]["chosen"]
        assert manifest["training"]["k"] == chosen["n_clusters"] == result.k
        assert [r["n_clusters"] for r in manifest["selection"]["k_sweep"]] == list(range(2, 11))
        assert manifest["selection"]["rule"].startswith("1. k sweep")
    else:
        assert manifest["training"]["k"] == result.k == 3
    assert manifest["training"]["cluster_features"] == list(params.cluster_features)
    assert (
        0 <= manifest["metrics"]["stability_ari_min"] <= manifest["metrics"]["stability_ari_mean"]
    )
    assert manifest["stability"]["n_boot"] == 5
    assert all(s["stability"]["band"] for s in manifest["segments"])


@pytest.mark.slow
def test_an_agglomerative_model_is_served_as_its_surrogate_by_the_graph(
    workspace, tmp_path, monkeypatch
):
    settings = _in_store(workspace[0], tmp_path / "store")
    seen = {}
    real_export = ex.export_model

    def spy(features, pipeline, rows, params, ids, **kwargs):
        # 3,000 customers: the training sample is every row.
        sample = kwargs["sample"]
        assert sample.rows == rows.rows
        seen.update(pipeline=pipeline, raw=sample.raw, X=sample.features, ids=ids)
        return real_export(features, pipeline, rows, params, ids, **kwargs)

    monkeypatch.setattr(candidate_module, "export_model", spy)
    params = TrainingParams(k=4, algorithm="agglomerative", seed=5, stability_boot=5)
    result = tr.train_and_publish(settings, params)
    manifest = _manifest(settings, result.version)
    pipeline = seen["pipeline"]
    assert isinstance(pipeline[-1], CentroidAssigner)
    model = manifest["training"]["model"]
    assert model["served_as"] == "nearest_centroid_surrogate"
    assert model["algorithm"] == "agglomerative"
    # The surrogate is scikit-learn's ward clustering's means in the clustering space.
    Z = pipeline[:-1].transform(seen["X"])
    labels, means = ward_surrogate(Z, 4)
    order = in_order_of(pipeline[-1].cluster_centers_, means)
    np.testing.assert_allclose(pipeline[-1].cluster_centers_, means[order])
    nearest = np.linalg.norm(Z[:, None] - means[None], axis=2).argmin(axis=1)
    agreement = np.mean(nearest == labels)
    assert manifest["metrics"]["surrogate_agreement"] == pytest.approx(agreement, abs=1e-6)
    # The served graph assigns every customer to the nearest of those means.
    store = open_store(settings.model_store)
    bundle = load_bundle(store, store.read_pointer()[0])
    served = bundle.scorer.score(seen["raw"]).segment_id
    surrogate = np.asarray(seen["ids"])[np.argsort(order)][nearest]
    assert np.mean(served == surrogate) >= 0.999


@pytest.mark.slow
def test_ids_stay_with_the_same_behaviour_across_trainings_on_resampled_data(
    workspace, tmp_path_factory
):
    del workspace  # only for its dbt target and log paths
    store = tmp_path_factory.mktemp("ids") / "store"
    params = TrainingParams(k=4, algorithm="kmeans", stability_boot=5)
    versions = []
    for seed in (31, 32):  # two samples of the same population, one store
        root = tmp_path_factory.mktemp(f"resample{seed}")
        settings = _settings(root, 3_000, seed=seed, store=store)
        params = TrainingParams(**{**params.__dict__, "seed": seed, "rebuild_features": True})
        versions.append(tr.train_and_publish(settings, params).version)
    first, second = (_manifest(settings, v) for v in versions)
    assert first["segment_ids"]["method"] == "first model"
    ids = second["segment_ids"]
    assert ids["method"] == "matched to the current model"
    assert ids["matched_version"] == versions[0]
    assert ids["fresh"] == [] and ids["retired"] == [] and ids["max_distance"] < 0.5
    assert ids["row_keep_share"] >= 0.9
    # The same behaviour (its name, from its profile) keeps its id.
    assert {s["id"]: s["name"] for s in first["segments"]} == {
        s["id"]: s["name"] for s in second["segments"]
    }
    old = {s["id"]: s["profile"]["cash_advance_ratio"] for s in first["segments"]}
    new = {s["id"]: s["profile"]["cash_advance_ratio"] for s in second["segments"]}
    assert all(abs(old[i] - new[i]) < 0.1 for i in old)
