"""Servable clusterings: every algorithm exports as centroids, with its agreement reported."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

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


@pytest.mark.parametrize("algorithm", list(SPECS))
def test_every_algorithm_is_servable_as_centroids_that_agree_with_its_labels(blobs, algorithm):
    X, _ = blobs
    model = fit_servable(SPECS[algorithm], X, random_state=0)
    assert model.cluster_centers_.shape == (3, 4)
    assert model.is_surrogate is (algorithm != "kmeans")
    assert model.agreement > 0.99
    kept = model.labels_ >= 0
    assert np.mean(model.predict(X)[kept] == model.labels_[kept]) == pytest.approx(model.agreement)


@pytest.mark.parametrize("algorithm", ["agglomerative", "gmm", "dbscan"])
def test_surrogate_centroids_are_the_cluster_means(blobs, algorithm):
    X, _ = blobs
    model = fit_servable(SPECS[algorithm], X, random_state=0)
    for j in range(model.n_clusters):
        members = X[model.labels_ == j]
        np.testing.assert_allclose(model.cluster_centers_[j], members.mean(axis=0))


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
    assert model.to_dict()["fit_rows"] == 300


def test_a_clustering_that_finds_only_noise_cannot_be_served():
    X = np.random.default_rng(0).uniform(size=(50, 2))
    with pytest.raises(ConfigError, match="only noise"):
        fit_servable(ClusterSpec("dbscan", eps=1e-6, min_samples=5), X, random_state=0)


def test_a_poor_surrogate_reports_its_disagreement():
    """Two concentric rings: cluster means coincide, so nearest-centroid cannot agree."""
    t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    inner = np.c_[np.cos(t), np.sin(t)]
    X = np.vstack([inner, 3 * inner + [0.5, 0]])
    labels = np.repeat([0, 1], 200)
    model = nearest_centroid_surrogate(X, labels, SPECS["agglomerative"])
    assert model.agreement < 0.8
    assert model.to_dict()["surrogate_agreement"] == pytest.approx(model.agreement, abs=1e-6)


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
