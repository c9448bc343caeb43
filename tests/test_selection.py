"""Model selection: the k sweep, the algorithm comparison and the documented rule."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import silhouette_score

from segmentation.errors import ConfigError
from training.clustering.selection import RULE, SelectionConfig, select_model, silhouettes

#: Small samples and few bootstrap refits: the rule is the same, the tests stay fast.
FAST = SelectionConfig(k_values=tuple(range(2, 8)), fit_rows=1_500, eval_rows=600, n_boot=3)


def blobs(k: int, seed: int, n: int = 2_000, std: float = 1.0, dims: int = 6) -> np.ndarray:
    X, _ = make_blobs(
        n, n_features=dims, centers=k, cluster_std=std, center_box=(-20, 20), random_state=seed
    )
    return X


@pytest.fixture(scope="module")
def five_blobs_selection():
    config = SelectionConfig(fit_rows=1_500, eval_rows=600, n_boot=3)  # the full k = 2..10
    return select_model(blobs(5, seed=3), random_state=0, config=config)


@pytest.mark.parametrize(("true_k", "seed"), [(3, 1), (6, 4)])
def test_the_number_of_generated_blobs_is_recovered(true_k, seed):
    result = select_model(blobs(true_k, seed), random_state=seed, config=FAST)
    assert result.chosen.n_clusters == true_k
    assert result.chosen.algorithm == "kmeans"  # ties go to KMeans on clean blobs


def test_the_sweep_scores_every_k_with_every_metric(five_blobs_selection):
    scores = five_blobs_selection.k_scores
    assert [s.n_segments for s in scores] == list(range(2, 11))
    best = max(scores, key=lambda s: s.silhouette)
    assert best.n_segments == 5
    assert min(scores, key=lambda s: s.davies_bouldin).n_segments == 5
    inertias = [s.inertia for s in scores]
    assert all(a > b for a, b in itertools.pairwise(inertias))  # elbow falls


def test_every_algorithm_is_compared_on_the_chosen_k(five_blobs_selection):
    algos = {s.spec.algorithm for s in five_blobs_selection.algorithm_scores}
    assert algos == {"kmeans", "agglomerative", "gmm", "dbscan"}
    for s in five_blobs_selection.algorithm_scores:
        if s.spec.algorithm != "dbscan":
            assert s.n_segments == 5
            assert s.agreement > 0.99
            assert s.ari_mean > 0.95


def test_a_k_with_a_tiny_segment_is_not_eligible():
    rng = np.random.default_rng(0)
    big = blobs(3, seed=4, n=1_960)
    tiny = rng.normal(loc=40.0, scale=0.5, size=(40, big.shape[1]))  # 2% of the rows
    result = select_model(np.vstack([big, tiny]), random_state=0, config=FAST)
    k4 = next(s for s in result.k_scores if s.n_segments == 4)
    assert k4.min_share < 0.05
    assert not k4.eligible
    assert any("smallest segment" in r for r in k4.reasons)
    assert result.chosen.n_clusters != 4


@pytest.mark.parametrize(("k", "algorithm"), [(4, None), (None, "agglomerative"), (3, "gmm")])
def test_a_fixed_k_or_algorithm_overrides_the_rule(k, algorithm):
    result = select_model(blobs(5, seed=5), random_state=0, config=FAST, k=k, algorithm=algorithm)
    assert result.k_fixed is (k is not None)
    assert result.algorithm_fixed is (algorithm is not None)
    assert result.chosen.n_clusters == (k or 5)
    assert result.chosen.algorithm == (algorithm or "kmeans")


def test_dbscan_candidates_report_their_noise_share():
    rng = np.random.default_rng(1)
    X = np.vstack([blobs(3, seed=6, n=1_500), rng.uniform(-30, 30, size=(300, 6))])
    result = select_model(X, random_state=0, config=FAST)
    dbscan = [s for s in result.algorithm_scores if s.spec.algorithm == "dbscan"]
    assert len(dbscan) == len(FAST.dbscan_min_samples) * len(FAST.dbscan_eps_quantiles)
    # 300 of 1,800 rows are uniform noise: a tight eps finds the 3 blobs and flags it.
    assert any(s.n_segments == 3 and 0.10 < s.noise_share < 0.30 for s in dbscan)
    assert all("noise_share" in s.to_dict() for s in dbscan)


def test_the_result_is_a_json_document_with_the_rule_and_sample_sizes(five_blobs_selection):
    doc = json.loads(json.dumps(five_blobs_selection.to_dict(), allow_nan=False))
    assert doc["chosen"] == {"algorithm": "kmeans", "n_clusters": 5}
    assert doc["rule"] == RULE
    assert doc["samples"] == {"fit_rows": 1_500, "eval_rows": 600}
    assert len(doc["k_sweep"]) == 9


def test_selection_is_reproducible_with_the_same_seed():
    X = blobs(4, seed=7, std=3.0)
    first = select_model(X, random_state=11, config=FAST).to_dict()
    second = select_model(X, random_state=11, config=FAST).to_dict()
    assert first == second


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"algorithm": "spectral"}, "algorithm"), ({"k": 1}, "k")],
)
def test_bad_choices_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        select_model(blobs(3, seed=8), random_state=0, config=FAST, **kwargs)


@pytest.mark.parametrize("noise_rows", [0, 150])
@pytest.mark.parametrize("chunk", [97, 5_000])
def test_shared_silhouettes_equal_scikit_learn(noise_rows, chunk):
    X, y = make_blobs(1_200, n_features=5, centers=4, cluster_std=2.5, random_state=9)
    random_labels = np.random.default_rng(0).integers(0, 3, len(X))
    y = y.copy()
    y[:noise_rows] = -1
    ours = silhouettes(X, [y, random_labels], chunk=chunk)
    kept = y >= 0
    assert ours[0] == pytest.approx(silhouette_score(X[kept], y[kept]), abs=1e-9)
    assert ours[1] == pytest.approx(silhouette_score(X, random_labels), abs=1e-9)
