"""Bootstrap stability: ARI on the full data and clusterboot's per-segment Jaccard."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from segmentation.errors import ConfigError
from training.clustering.stability import (
    assess_stability,
    bootstrap_stability,
    clusterboot_jaccard,
    jaccard_band,
)
from training.clustering.surrogate import ClusterSpec


def data(std: float, seed: int = 0) -> np.ndarray:
    centers = np.array([[0, 0, 0], [6, 0, 0], [0, 6, 0], [0, 0, 6]], dtype=float)
    X, _ = make_blobs(800, centers=centers, cluster_std=std, random_state=seed)
    return X


@pytest.mark.parametrize("algorithm", ["kmeans", "agglomerative", "gmm"])
def test_well_separated_segments_are_highly_stable(algorithm):
    result = assess_stability(ClusterSpec(algorithm, 4), data(0.6), n_boot=6, random_state=0)
    assert result.ari_mean > 0.97
    assert result.ari_min > 0.9
    assert [s.band for s in result.segments] == ["highly stable"] * 4
    assert all(s.dissolved == 0 and s.recovered == 6 for s in result.segments)


@pytest.mark.parametrize("algorithm", ["kmeans", "agglomerative"])
def test_overlapping_segments_are_less_stable_than_separated_ones(algorithm):
    spec = ClusterSpec(algorithm, 4)
    separated = assess_stability(spec, data(0.6), n_boot=8, random_state=1)
    overlapping = assess_stability(spec, data(4.0), n_boot=8, random_state=1)
    assert overlapping.ari_mean < separated.ari_mean - 0.2
    assert overlapping.jaccard_min < separated.jaccard_min - 0.2


def test_too_many_segments_split_unstably():
    """Six segments forced on four blobs: the split blobs are not reproducible."""
    result = assess_stability(ClusterSpec("kmeans", 6), data(1.0), n_boot=10, random_state=2)
    assert min(s.jaccard_mean for s in result.segments) < 0.75
    assert result.ari_mean < 0.95


@pytest.mark.parametrize(
    ("value", "band"),
    [
        (0.0, "unstable"),
        (0.599, "unstable"),
        (0.6, "patterns"),
        (0.749, "patterns"),
        (0.75, "stable"),
        (0.85, "stable"),
        (0.851, "highly stable"),
        (1.0, "highly stable"),
    ],
)
def test_jaccard_values_fall_in_hennigs_bands(value, band):
    assert jaccard_band(value) == band


@pytest.mark.parametrize(
    ("reference", "boot", "expected"),
    [
        # cluster 0 = rows {0,1,2}: best match boot {0,1} -> 2/3; cluster 1 = {3,4,5}:
        # best boot {2,3,4,5} -> 3/4.
        ([0, 0, 0, 1, 1, 1], [1, 1, 0, 0, 0, 0], [2 / 3, 3 / 4]),
        # noise (-1) in the refit belongs to no cluster: cluster 1 matches {4,5}: 2/3.
        ([0, 0, 0, 1, 1, 1], [0, 0, 0, -1, 1, 1], [1.0, 2 / 3]),
        # nothing but noise in the refit: no match, Jaccard 0 (zerobyzero = 0).
        ([0, 0, 1, 1], [-1, -1, -1, -1], [0.0, 0.0]),
        # a reference cluster absent from the resample scores 0.
        ([0, 0, 0, 0], [0, 0, 0, 0], [1.0, 0.0]),
    ],
)
def test_clusterboot_jaccard_is_the_best_match_per_reference_cluster(reference, boot, expected):
    got = clusterboot_jaccard(np.array(reference), np.array(boot), n_reference=2)
    np.testing.assert_allclose(got, expected)


def test_refits_that_find_only_noise_count_as_no_match():
    X = data(0.6)
    reference = np.repeat(np.arange(4), 200)

    def noise_only(rows, seed):
        return np.full(len(rows), -1), lambda x: np.full(len(x), -1)

    result = bootstrap_stability(X, reference, noise_only, n_boot=3, random_state=0)
    assert result.ari_mean == pytest.approx(0.0)
    assert all(s.jaccard_mean == 0.0 and s.band == "unstable" for s in result.segments)


def test_refits_see_resampled_rows_without_duplicates_and_the_ari_uses_all_rows():
    X = data(0.6)
    reference = np.repeat(np.arange(4), 200)
    reference[:10] = -1  # noise in the reference is left out of the ARI
    seen, predicted = [], []

    def spy(rows, seed):
        seen.append(len(np.unique(rows, axis=0)) == len(rows) and len(rows) < len(X))

        def predict(x):
            predicted.append(len(x))
            return np.zeros(len(x), dtype=int)

        return np.zeros(len(rows), dtype=int), predict

    bootstrap_stability(X, reference, spy, n_boot=4, random_state=0)
    assert seen == [True] * 4
    assert predicted == [len(X) - 10] * 4


def test_stability_is_reproducible_with_the_same_seed():
    spec = ClusterSpec("kmeans", 4)
    first = assess_stability(spec, data(2.5), n_boot=5, random_state=7).to_dict()
    second = assess_stability(spec, data(2.5), n_boot=5, random_state=7).to_dict()
    assert first == second
    assert first["n_boot"] == 5 and first["rows"] == 800 and len(first["segments"]) == 4


def test_dbscan_noise_is_left_out_of_the_comparison():
    rng = np.random.default_rng(0)
    X = np.vstack([data(0.4), rng.uniform(-20, 26, size=(40, 3))])
    spec = ClusterSpec("dbscan", eps=0.8, min_samples=8)
    result = assess_stability(spec, X, n_boot=5, random_state=0)
    assert len(result.segments) == 4  # noise is no segment
    assert result.ari_mean > 0.95


def test_fewer_than_two_refits_are_refused():
    with pytest.raises(ConfigError, match="n_boot"):
        assess_stability(ClusterSpec("kmeans", 2), data(1.0), n_boot=1, random_state=0)
