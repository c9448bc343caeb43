"""The training pipeline: its steps, its knobs, the clipper and the evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from segmentation import ConfigError, Settings
from training.model.params import TrainingParams
from training.model.pipeline import build_pipeline, evaluate
from training.model.steps import CentroidAssigner, ColumnSelector, QuantileClipper

NAMES = tuple(f"f{i}" for i in range(6))


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    """Three separated clusters in 6-D with a few NaNs and outliers, seeded."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 6, size=(3, 6))
    X = np.vstack([c + rng.normal(0, 1, size=(400, 6)) for c in centers])
    X[rng.random(X.shape) < 0.02] = np.nan
    X[:3, 0] = 1e6  # outliers the clipper must tame
    return X


def kept_variance(X: np.ndarray) -> np.ndarray:
    """Cumulative share of variance of the principal components of ``X``, by numpy."""
    eigenvalues = np.linalg.eigvalsh(np.cov(X, rowvar=False))[::-1]
    return np.cumsum(eigenvalues) / eigenvalues.sum()


def test_the_fitted_steps_impute_medians_clip_to_quantiles_and_standardise(blobs):
    pipeline = build_pipeline(TrainingParams(k=3, clip_quantiles=(0.01, 0.99))).fit(blobs)
    # The names are the export's contract (training.export.fold reads the steps by name).
    assert list(pipeline.named_steps) == ["select", "impute", "clip", "scale", "pca", "cluster"]
    imputed = np.where(np.isnan(blobs), np.nanmedian(blobs, axis=0), blobs)
    np.testing.assert_allclose(pipeline[:2].transform(blobs), imputed)
    low, high = np.quantile(imputed, [0.01, 0.99], axis=0)
    clipper = pipeline.named_steps["clip"]
    np.testing.assert_allclose(clipper.lower_, low)
    np.testing.assert_allclose(clipper.upper_, high)
    clipped = np.clip(imputed, low, high)
    assert clipped[:3, 0].max() < 1e3  # the 1e6 outliers are tamed
    standard = (clipped - clipped.mean(axis=0)) / clipped.std(axis=0)
    np.testing.assert_allclose(pipeline[:4].transform(blobs), standard, atol=1e-9)


#: The default clustering features as the README documents them.
README_BEHAVIOUR_FEATURES = (
    "log_purchases",
    "log_cash_advance",
    "purchases_frequency",
    "cash_advance_frequency",
    "installment_purchase_share",
    "full_payment_share",
)


def test_by_default_the_six_behaviour_features_are_clustered_and_k_is_selected():
    names = ("balance_ratio", *reversed(README_BEHAVIOUR_FEATURES), "tenure", "log_balance")
    X = np.arange(40.0 * len(names)).reshape(40, len(names)) ** 1.5  # every column distinct
    params = TrainingParams()
    pipeline = build_pipeline(params, names).fit(X)
    kept = [names.index(n) for n in README_BEHAVIOUR_FEATURES]
    np.testing.assert_array_equal(pipeline.named_steps["select"].transform(X), X[:, kept])
    assert params.sweeps is True


@pytest.mark.parametrize(
    ("k", "algorithm", "select", "sweeps"),
    [(4, "kmeans", True, False), (4, None, True, True), (None, "gmm", True, True),
     (None, None, False, False)],
)  # fmt: skip
def test_selection_runs_unless_k_and_algorithm_are_fixed_or_it_is_off(k, algorithm, select, sweeps):
    assert TrainingParams(k=k, algorithm=algorithm, select=select).sweeps is sweeps


@pytest.mark.parametrize(
    ("wanted", "kept"), [(("f4", "f1"), [4, 1]), (None, [0, 1, 2, 3, 4, 5]), (("f0",), [0])]
)
def test_the_first_step_keeps_the_cluster_features_in_their_order(blobs, wanted, kept):
    pipeline = build_pipeline(TrainingParams(k=3, cluster_features=wanted), NAMES).fit(blobs)
    selected = pipeline.named_steps["select"].transform(blobs)
    np.testing.assert_array_equal(selected, blobs[:, kept])
    assert pipeline.named_steps["pca"].n_features_in_ == len(kept)


def test_unknown_cluster_features_raise_a_config_error_naming_them():
    with pytest.raises(ConfigError, match=r"cluster_features: .*\['log_nothing'\]"):
        build_pipeline(TrainingParams(cluster_features=("f1", "log_nothing")), NAMES)


def test_column_selector_refuses_indices_beyond_the_matrix():
    with pytest.raises(ConfigError, match="column indices below 2"):
        ColumnSelector((0, 5)).fit(np.ones((4, 2)))


def test_centroid_assigner_serves_the_nearest_of_fixed_centres():
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    X = np.array([[1.0, 1.0], [9.0, -1.0], [1.0, 8.0], [4.0, 0.0]])
    assigner = CentroidAssigner(centers).fit(X)
    np.testing.assert_array_equal(assigner.predict(X), [0, 1, 2, 0])
    np.testing.assert_allclose(assigner.transform(X)[3], [4.0, 6.0, np.hypot(4, 10)])
    assert assigner.n_clusters == 3 and assigner.labels_.tolist() == [0, 1, 2, 0]


def test_centroid_assigner_refuses_centres_of_another_width():
    with pytest.raises(ConfigError, match="centroids of width 3"):
        CentroidAssigner(np.zeros((2, 2))).fit(np.ones((4, 3)))


@pytest.mark.parametrize(("k", "variance", "seed"), [(3, 0.8, 1), (5, 0.95, 2)])
def test_the_fitted_pipeline_keeps_the_pca_variance_and_clusters_with_the_seeded_kmeans(
    blobs, k, variance, seed
):
    pipeline = build_pipeline(TrainingParams(k=k, pca_variance=variance, seed=seed)).fit(blobs)
    standard = pipeline[:4].transform(blobs)
    embedding = pipeline[:5].transform(blobs)
    kept = kept_variance(standard)
    n = embedding.shape[1]  # the fewest components that keep the variance asked for
    assert kept[n - 1] >= variance > (kept[n - 2] if n > 1 else 0.0)
    assert pipeline.named_steps["pca"].explained_variance_ratio_.sum() == pytest.approx(kept[n - 1])
    # scikit-learn's KMeans with that k and seed on the same embedding: the same model.
    reference = KMeans(k, n_init=10, random_state=seed).fit(embedding)
    kmeans = pipeline.named_steps["cluster"]
    np.testing.assert_allclose(kmeans.cluster_centers_, reference.cluster_centers_)
    assert len(np.unique(pipeline.predict(blobs))) == k


def test_same_seed_gives_the_same_model_and_labels(blobs):
    first = build_pipeline(TrainingParams(k=3, seed=5)).fit(blobs)
    second = build_pipeline(TrainingParams(k=3, seed=5)).fit(blobs)
    np.testing.assert_array_equal(first.predict(blobs), second.predict(blobs))
    np.testing.assert_array_equal(
        first.named_steps["cluster"].cluster_centers_,
        second.named_steps["cluster"].cluster_centers_,
    )


def test_clipper_learns_quantile_bounds_and_clips_to_them():
    X = np.column_stack([np.arange(1001.0), -np.arange(1001.0)])
    clipper = QuantileClipper((0.01, 0.99)).fit(X)
    np.testing.assert_allclose(clipper.lower_, [10.0, -990.0])
    np.testing.assert_allclose(clipper.upper_, [990.0, -10.0])
    out = clipper.transform(np.array([[-5.0, 5.0], [500.0, -500.0], [2000.0, np.nan]]))
    np.testing.assert_array_equal(out[:2], [[10.0, -10.0], [500.0, -500.0]])
    assert out[2, 0] == 990.0 and np.isnan(out[2, 1])


def test_clipper_leaves_an_all_missing_column_unbounded():
    X = np.column_stack([np.arange(10.0), np.full(10, np.nan)])
    clipper = QuantileClipper().fit(X)
    assert clipper.lower_[1] == -np.inf and clipper.upper_[1] == np.inf


def test_clipper_refuses_a_different_feature_count():
    clipper = QuantileClipper().fit(np.ones((5, 2)))
    with pytest.raises(ValueError, match="features"):
        clipper.transform(np.ones((5, 3)))


def test_evaluation_reports_metrics_and_the_atypical_quantile(blobs):
    params = TrainingParams(k=3, seed=3, silhouette_sample=500)
    pipeline = build_pipeline(params).fit(blobs)
    ev = evaluate(pipeline, blobs, params)
    assert ev.sizes.sum() == len(blobs) and len(ev.sizes) == 3
    assert 0.5 < ev.silhouette <= 1.0  # well separated blobs
    # The seeded 500-row sample estimates scikit-learn's silhouette of every row.
    assert ev.silhouette == pytest.approx(silhouette_score(ev.embedding, ev.labels), abs=0.03)
    assert ev.inertia == pytest.approx(pipeline.named_steps["cluster"].inertia_, rel=1e-6)
    assert ev.explained_variance >= 0.90 and ev.n_components == ev.embedding.shape[1]
    nearest = ev.distances.min(axis=1)
    assert np.mean(nearest > ev.atypical_distance) == pytest.approx(0.01, abs=0.005)
    np.testing.assert_array_equal(ev.labels, pipeline.predict(blobs))


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"SEGMENTATION_K": "6"}, "k", 6),
        ({"SEGMENTATION_PCA_VARIANCE": "0.8"}, "pca_variance", 0.8),
        ({"SEGMENTATION_KMEANS_N_INIT": "20"}, "n_init", 20),
        ({"SEGMENTATION_CLIP_QUANTILES": "0.01,0.99"}, "clip_quantiles", (0.01, 0.99)),
        ({"SEGMENTATION_ALGORITHM": "Agglomerative"}, "algorithm", "agglomerative"),
        ({"SEGMENTATION_SELECT": "false"}, "select", False),
        ({"SEGMENTATION_CLUSTER_FEATURES": "all"}, "cluster_features", None),
        ({"SEGMENTATION_CLUSTER_FEATURES": "a, b"}, "cluster_features", ("a", "b")),
    ],
)
def test_params_read_environment_overrides(monkeypatch, env, field, value):
    monkeypatch.setenv("SEGMENTATION_SEED", "9")
    for name, raw in env.items():
        monkeypatch.setenv(name, raw)
    params = TrainingParams.from_settings(Settings.from_env())
    assert getattr(params, field) == value
    assert params.seed == 9


def test_explicit_overrides_beat_the_environment(monkeypatch):
    monkeypatch.setenv("SEGMENTATION_K", "6")
    params = TrainingParams.from_settings(Settings.from_env(), k=3, seed=None)
    assert params.k == 3 and params.seed == Settings().seed


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SEGMENTATION_K": "four"}, "SEGMENTATION_K: expected int"),
        ({"SEGMENTATION_K": "1"}, "k: expected at least 2"),
        ({"SEGMENTATION_PCA_VARIANCE": "1.5"}, r"pca_variance: expected in \(0, 1\]"),
        ({"SEGMENTATION_KMEANS_N_INIT": "3"}, "n_init: expected at least 10"),
        ({"SEGMENTATION_CLIP_QUANTILES": "0.9,0.1"}, "clip_quantiles: expected"),
        ({"SEGMENTATION_CLIP_QUANTILES": "0.1"}, "expected 'low,high'"),
        ({"SEGMENTATION_ALGORITHM": "kmedoids"}, "algorithm: expected one of"),
        ({"SEGMENTATION_SELECT": "maybe"}, "SEGMENTATION_SELECT: expected true or false"),
        ({"SEGMENTATION_CLUSTER_FEATURES": ","}, "SEGMENTATION_CLUSTER_FEATURES: expected"),
        ({"SEGMENTATION_ALGORITHM": "dbscan", "SEGMENTATION_K": "4"}, "dbscan finds its own k"),
    ],
)
def test_bad_settings_raise_config_errors_naming_the_setting(monkeypatch, env, message):
    for name, raw in env.items():
        monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError, match=message):
        TrainingParams.from_settings(Settings.from_env())
