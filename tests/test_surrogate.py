"""Servable clusterings: every algorithm exports as centroids, with its agreement reported."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import DBSCAN, AgglomerativeClustering, KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from segmentation.errors import ConfigError
from training.clustering.surrogate import ClusterSpec, fit_servable, nearest_centroid_surrogate

SPECS = {
    "kmeans": ClusterSpec("kmeans", 3),
    "agglomerative": ClusterSpec("agglomerative", 3),
    "gmm": ClusterSpec("gmm", 3),
    "dbscan": ClusterSpec("dbscan", eps=1.0, min_samples=8),
}


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(900, n_features=4, centers=3, cluster_std=0.6, random_state=3)


#: scikit-learn's own estimators for SPECS, fitted here as the oracle.
REFERENCE = {
    "kmeans": lambda: KMeans(3, n_init=4, random_state=0),
    "agglomerative": lambda: AgglomerativeClustering(3, linkage="ward"),
    "gmm": lambda: GaussianMixture(3, covariance_type="full", random_state=0),
    "dbscan": lambda: DBSCAN(eps=1.0, min_samples=8),
}


def reference(algorithm: str, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's labels on ``X`` and its centroids: KMeans' own, else the cluster means."""
    estimator = REFERENCE[algorithm]()
    labels = estimator.fit_predict(X)
    if algorithm == "kmeans":
        return labels, estimator.cluster_centers_
    return labels, np.array([X[labels == c].mean(axis=0) for c in np.unique(labels[labels >= 0])])


def matched(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """``want`` reordered row for row like ``got`` (each centre paired with its nearest)."""
    pairs = np.linalg.norm(got[:, None] - want[None], axis=2).argmin(axis=1)
    assert sorted(pairs.tolist()) == list(range(len(want)))
    return want[pairs]


@pytest.mark.parametrize("algorithm", list(SPECS))
def test_every_algorithm_is_servable_as_the_centroids_of_its_scikit_learn_labels(blobs, algorithm):
    X, _ = blobs
    model = fit_servable(SPECS[algorithm], X, random_state=0)
    labels, centers = reference(algorithm, X)
    assert adjusted_rand_score(labels, model.labels_) == 1.0
    assert model.is_surrogate is (algorithm != "kmeans")
    np.testing.assert_allclose(model.cluster_centers_, matched(model.cluster_centers_, centers))
    # Agreement, by hand: the non-noise rows whose nearest centroid is their own cluster's.
    kept = labels >= 0
    nearest = np.linalg.norm(X[:, None] - centers[None], axis=2).argmin(axis=1)
    own = np.searchsorted(np.unique(labels[kept]), labels)
    assert model.agreement == pytest.approx(np.mean(nearest[kept] == own[kept]))
    assert model.agreement > 0.99


def test_kmeans_is_served_as_itself(blobs):
    X, _ = blobs
    model = fit_servable(SPECS["kmeans"], X, random_state=0)
    reference = KMeans(3, n_init=4, random_state=0).fit(X)
    np.testing.assert_allclose(model.cluster_centers_, reference.cluster_centers_)
    new = np.random.default_rng(0).normal(size=(200, 4)) * 5
    np.testing.assert_array_equal(model.predict(new), reference.predict(new))
    np.testing.assert_allclose(model.transform(new), reference.transform(new), rtol=1e-9)


def test_noise_is_excluded_from_the_centroids_and_reported():
    X = np.vstack([np.zeros((50, 2)), np.full((50, 2), 10.0), [[100.0, 100.0]]])
    labels = np.array([4] * 50 + [7] * 50 + [-1])  # any label values; -1 is noise
    model = nearest_centroid_surrogate(X, labels, SPECS["dbscan"])
    np.testing.assert_allclose(model.cluster_centers_, [[0.0, 0.0], [10.0, 10.0]])
    assert model.noise_share == pytest.approx(1 / 101)
    assert model.labels_[-1] == -1 and set(model.labels_[:-1]) == {0, 1}
    assert model.agreement == 1.0


def test_the_served_distances_are_the_euclidean_distances_to_each_centroid(blobs):
    X, _ = blobs
    model = fit_servable(SPECS["agglomerative"], X, random_state=0)
    expected = np.linalg.norm(X[:, None, :] - model.cluster_centers_[None], axis=2)
    np.testing.assert_allclose(model.transform(X), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(model.predict(X), expected.argmin(axis=1))


@pytest.mark.parametrize("algorithm", ["agglomerative", "dbscan"])
def test_pairwise_algorithms_fit_a_seeded_sample_of_large_data(blobs, algorithm):
    X, _ = blobs
    model = fit_servable(SPECS[algorithm], X, random_state=0, max_pairwise_rows=300)
    again = fit_servable(SPECS[algorithm], X, random_state=0, max_pairwise_rows=300)
    assert len(model.fit_index) == 300 and len(model.labels_) == 300
    np.testing.assert_array_equal(model.fit_index, again.fit_index)
    labels, centers = reference(algorithm, X[model.fit_index])
    assert adjusted_rand_score(labels, model.labels_) == 1.0
    np.testing.assert_allclose(model.cluster_centers_, matched(model.cluster_centers_, centers))
    assert model.to_dict()["fit_rows"] == 300


def test_a_clustering_that_finds_only_noise_cannot_be_served():
    X = np.random.default_rng(0).uniform(size=(50, 2))
    with pytest.raises(ConfigError, match="only noise"):
        fit_servable(ClusterSpec("dbscan", eps=1e-6, min_samples=5), X, random_state=0)


def test_a_poor_surrogate_reports_its_disagreement():
    """Two rings, radius 1 round (0, 0) and radius 3 round (0.5, 0): their means are those
    centres, so a point goes to the inner ring's centroid exactly when its x < 0.25."""
    t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    inner = np.c_[np.cos(t), np.sin(t)]
    X = np.vstack([inner, 3 * inner + [0.5, 0]])
    labels = np.repeat([0, 1], 200)
    model = nearest_centroid_surrogate(X, labels, SPECS["agglomerative"])
    np.testing.assert_allclose(model.cluster_centers_, [[0.0, 0.0], [0.5, 0.0]], atol=1e-12)
    by_hand = (np.sum(np.cos(t) < 0.25) + np.sum(3 * np.cos(t) + 0.5 > 0.25)) / 400
    assert model.agreement == pytest.approx(by_hand) and by_hand < 0.6
    assert model.to_dict()["surrogate_agreement"] == pytest.approx(by_hand, abs=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"algorithm": "spectral", "n_clusters": 3},
        {"algorithm": "kmeans", "n_clusters": 1},
        {"algorithm": "dbscan", "eps": 0.0, "min_samples": 5},
        {"algorithm": "dbscan", "eps": 0.5},
    ],
)
def test_invalid_specs_are_refused(kwargs):
    with pytest.raises(ConfigError):
        ClusterSpec(**kwargs)
