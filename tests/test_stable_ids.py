"""Stable ids: the same behaviour keeps the same id across retrains."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from segmentation.errors import ConfigError
from training.segments.explain import segment_profiles
from training.segments.stable_ids import ids_by_size, match_segment_ids

FEATURES = ("log_purchases", "log_cash_advance", "purchases_frequency", "full_payment_share")
BEHAVIOURS = np.array(
    [[7.0, 1.0, 0.9, 0.6], [2.0, 7.5, 0.1, 0.05], [1.0, 1.0, 0.05, 0.1], [6.0, 5.0, 0.6, 0.2]]
)


def population(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Customers of four behaviours (engineered-feature units) and their true behaviour."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, len(BEHAVIOURS), n)
    X = BEHAVIOURS[truth] + rng.normal(scale=[0.6, 0.6, 0.08, 0.05], size=(n, 4))
    return X, truth


def train(X: np.ndarray, seed: int, k: int = 4):
    """A training run: its own scaler, PCA space and arbitrary KMeans numbering."""
    model = make_pipeline(
        StandardScaler(), PCA(0.9, random_state=seed), KMeans(k, n_init=1, random_state=seed)
    )
    return model.fit(X)


def profiles(model, X: np.ndarray, k: int) -> np.ndarray:
    return segment_profiles(X, model.predict(X), FEATURES, k).means


@pytest.mark.parametrize(("seed_old", "seed_new"), [(1, 2), (3, 4), (5, 6)])
def test_ids_survive_retraining_on_resampled_data(seed_old, seed_new):
    X, truth = population(3_000, seed=0)
    rng = np.random.default_rng(seed_new)
    old_rows = rng.choice(len(X), len(X))  # two trainings on two bootstrap samples
    new_rows = rng.choice(len(X), len(X))
    old = train(X[old_rows], seed_old)
    new = train(X[new_rows], seed_new)
    old_ids = [10, 11, 12, 13]  # ids of the current model (not its cluster indices)
    old_row_ids = np.asarray(old_ids)[old.predict(X)]

    match = match_segment_ids(
        profiles(old, X, 4),
        old_ids,
        profiles(new, X, 4),
        X.std(axis=0),
        old_row_ids=old_row_ids,
        new_row_segments=new.predict(X),
    )

    assert sorted(match.ids) == old_ids and match.fresh == () and match.retired == ()
    new_row_ids = np.asarray(match.ids)[new.predict(X)]
    for behaviour in range(len(BEHAVIOURS)):  # each behaviour keeps its id
        who = truth == behaviour
        assert np.bincount(new_row_ids[who]).argmax() == np.bincount(old_row_ids[who]).argmax()
    assert match.row_keep_share > 0.99
    assert match.max_distance < 0.1


def test_a_new_behaviour_gets_a_fresh_id_above_every_old_one():
    X, _ = population(2_000, seed=1)
    extra = np.random.default_rng(1).normal([4.0, 9.0, 0.95, 0.9], 0.1, size=(400, 4))
    old = train(X, seed=1)
    both = np.vstack([X, extra])
    new = train(both, seed=2, k=5)
    match = match_segment_ids(
        profiles(old, X, 4), [0, 1, 2, 7], profiles(new, both, 5), both.std(axis=0)
    )
    assert len(match.fresh) == 1
    assert match.ids[match.fresh[0]] == 8
    assert sorted(i for i in match.ids if i != 8) == [0, 1, 2, 7]
    extra_segment = np.bincount(new.predict(extra)).argmax()
    assert match.fresh == (extra_segment,)


def test_a_segment_that_no_longer_exists_retires_its_id():
    X, truth = population(2_000, seed=2)
    old = train(X, seed=1)
    kept = truth != 2
    new = train(X[kept], seed=3, k=3)
    match = match_segment_ids(
        profiles(old, X, 4), [0, 1, 2, 3], profiles(new, X[kept], 3), X.std(axis=0)
    )
    retired_cluster = np.bincount(old.predict(X[truth == 2])).argmax()
    assert match.retired == (int(retired_cluster),)
    assert match.fresh == ()


@pytest.mark.parametrize(("shift", "fresh"), [(0.5, ()), (2.0, (0,))])
def test_a_pair_further_apart_than_the_limit_is_not_the_same_segment(shift, fresh):
    old = np.array([[0.0, 0.0], [10.0, 10.0]])
    new = np.array([[shift, shift], [10.0, 10.0]])
    match = match_segment_ids(old, [5, 6], new, np.ones(2), max_distance=1.0)
    assert match.fresh == fresh
    assert match.ids == ((5, 6) if not fresh else (7, 6))


def test_missing_profile_values_are_skipped_in_the_distance():
    old = np.array([[0.0, np.nan], [5.0, 1.0]])
    new = np.array([[5.0, 1.0], [0.1, 3.0]])
    match = match_segment_ids(old, [0, 1], new, np.ones(2))
    assert match.ids == (1, 0)
    assert match.mean_distance == pytest.approx(0.05)


def test_a_first_model_numbers_its_segments_by_size_largest_first():
    # Cluster sizes 2, 5, 1, 5: the two largest tie and keep their index order.
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 2, 3, 3, 3, 3, 3])
    first = ids_by_size(labels, 4)
    assert first.ids == (2, 0, 3, 1)
    assert json.loads(json.dumps(first.to_dict()))["fresh"] == [0, 1, 2, 3]


def test_a_first_model_gives_an_empty_cluster_the_last_id():
    first = ids_by_size(np.array([1, 1, 2]), 3)
    assert first.ids == (2, 0, 1)


def test_the_match_is_a_json_document():
    match = match_segment_ids(np.eye(3), [3, 1, 2], np.eye(3)[::-1], np.ones(3))
    doc = json.loads(json.dumps(match.to_dict(), allow_nan=False))
    assert doc["ids"] == [2, 1, 3]
    assert doc["mean_distance"] == 0.0 and doc["row_keep_share"] is None


@pytest.mark.parametrize(
    ("old_ids", "new_shape", "field"),
    [([0, 0], (2, 3), "old_ids"), ([0], (2, 3), "old_ids"), ([0, 1], (2, 4), "profiles")],
)
def test_inconsistent_inputs_are_refused(old_ids, new_shape, field):
    with pytest.raises(ConfigError, match=field):
        match_segment_ids(np.zeros((2, 3)), old_ids, np.zeros(new_shape), np.ones(3))


def test_the_migration_matrix_counts_where_each_current_customer_goes():
    old_rows = np.array([7, 7, 7, 9, 9, 9, 9])  # the current model's ids for 7 customers
    new_rows = np.array([0, 0, 1, 1, 1, 1, 0])  # the new model's segment index
    # Identical profiles: new segment 0 keeps id 7, new segment 1 keeps id 9.
    match = match_segment_ids(
        np.eye(2), [7, 9], np.eye(2), np.ones(2), old_row_ids=old_rows, new_row_segments=new_rows
    )
    assert match.ids == (7, 9)
    assert set(match.migration) == {(7, 7, 2), (7, 9, 1), (9, 9, 3), (9, 7, 1)}
    assert match.row_keep_share == pytest.approx(5 / 7)
