"""Business names from segment profiles: archetype scoring and a unique assignment."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segmentation.errors import ConfigError
from training.segments.explain import segment_profiles
from training.segments.naming import CORE_ARCHETYPES, CORE_MIN_SCORE, EXTRA_MIN_SCORE, name_segments

FEATURES = (
    "log_balance",
    "log_purchases",
    "log_credit_limit",
    "payment_consistency_index",
    "full_payment_share",
    "cash_advance_ratio",
    "cash_advance_frequency",
    "log_cash_advance",
    "purchases_frequency",
    "balance_frequency",
    "installment_purchase_share",
    "purchases_installments_frequency",
    "credit_utilization_ratio",
    "payment_to_minimum_ratio",
    "oneoff_purchase_share",
    "average_ticket",
    "tenure",
)
#: Typical customers of each archetype, in feature units (same order as FEATURES).
ARCHETYPE_MEANS = {
    "Premium High Spenders": (
        8.5,
        8.5,
        9.5,
        0.6,
        0.2,
        0.1,
        0.1,
        3,
        0.9,
        1.0,
        0.4,
        0.5,
        0.4,
        3,
        0.6,
        150,
        12,
    ),
    "Stable Customers": (
        6.5,
        6.5,
        8.3,
        0.95,
        0.7,
        0.02,
        0.02,
        0.5,
        0.7,
        0.9,
        0.5,
        0.5,
        0.15,
        5,
        0.5,
        60,
        12,
    ),
    "Cash Advance Heavy Users": (
        8.0,
        2.0,
        8.5,
        0.3,
        0.02,
        0.9,
        0.5,
        8,
        0.1,
        1.0,
        0.2,
        0.1,
        0.7,
        1.5,
        0.3,
        20,
        12,
    ),
    "Low Engagement Users": (
        4.0,
        1.0,
        7.8,
        0.4,
        0.1,
        0.2,
        0.02,
        0.5,
        0.05,
        0.4,
        0.1,
        0.05,
        0.05,
        2,
        0.2,
        10,
        12,
    ),
    "Installment Shoppers": (
        6.0,
        6.0,
        8.0,
        0.7,
        0.3,
        0.05,
        0.03,
        1,
        0.8,
        0.9,
        0.95,
        0.9,
        0.3,
        3,
        0.05,
        40,
        12,
    ),
    "short tenure": (
        6.0,
        5.0,
        8.3,
        0.6,
        0.3,
        0.3,
        0.15,
        4,
        0.5,
        0.8,
        0.4,
        0.4,
        0.35,
        3,
        0.4,
        60,
        6,
    ),
}


def customers(archetypes: list[str], seed: int, per_segment: int = 200):
    """Noisy customers of the given archetypes, with labels shuffled to arbitrary indices."""
    rng = np.random.default_rng(seed)
    means = np.array([ARCHETYPE_MEANS[a] for a in archetypes], dtype=float)
    spread = np.abs(means).max(axis=0) * 0.05 + 1e-3
    X = np.vstack([m + rng.normal(scale=spread, size=(per_segment, len(m))) for m in means])
    order = rng.permutation(len(archetypes))  # cluster index order is arbitrary
    labels = np.repeat(order, per_segment)
    truth = {int(order[i]): a for i, a in enumerate(archetypes)}
    return X, labels, truth


def names_for(archetypes: list[str], seed: int, features=FEATURES):
    X, labels, truth = customers(archetypes, seed)
    cols = [FEATURES.index(f) for f in features]
    prof = segment_profiles(X[:, cols], labels, features, len(archetypes))
    return name_segments(prof.z, features), truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_four_archetypes_are_recognised_whatever_the_cluster_order(seed):
    naming, truth = names_for(list(CORE_ARCHETYPES), seed)
    assert {n.segment: n.name for n in naming.names} == truth


@pytest.mark.parametrize(
    "archetypes",
    [
        ["Premium High Spenders", "Low Engagement Users"],
        ["Cash Advance Heavy Users", "Premium High Spenders", "Low Engagement Users"],
    ],
)
def test_fewer_segments_get_the_best_fitting_core_names(archetypes):
    """Scores are relative to the population: without premium customers in it, the best
    spenders would look premium, so these cases keep the contrasts the names rely on."""
    naming, truth = names_for(archetypes, seed=3)
    assert {n.segment: n.name for n in naming.names} == truth


def test_extra_segments_get_extra_archetypes_or_a_descriptive_fallback():
    archetypes = [*CORE_ARCHETYPES, "Installment Shoppers", "short tenure"]
    naming, truth = names_for(archetypes, seed=4)
    got = {n.segment: n.name for n in naming.names}
    tenure_segment = next(s for s, a in truth.items() if a == "short tenure")
    assert got[tenure_segment] == f"Segment {tenure_segment}: low tenure"
    assert {s: a for s, a in truth.items() if a != "short tenure"} == {
        s: n for s, n in got.items() if s != tenure_segment
    }


@pytest.mark.parametrize("k", range(2, 11))
def test_names_are_unique_for_any_number_of_segments(k):
    z = np.random.default_rng(k).normal(size=(k, len(FEATURES)))
    naming = name_segments(z, FEATURES, ids=[10 + i for i in range(k)])
    names = [n.name for n in naming.names]
    assert len(set(names)) == k
    for n in naming.names:  # a name is given only where the profile supports it
        if n.archetype is None:
            assert n.name == f"Segment {10 + n.segment}: {n.top_trait}"
        else:
            assert n.score >= (
                CORE_MIN_SCORE if n.archetype in CORE_ARCHETYPES else EXTRA_MIN_SCORE
            )


def test_a_core_name_the_profile_does_not_support_is_not_given():
    """Four segments, none of them low-activity: no one is called Low Engagement."""
    archetypes = [
        "Premium High Spenders",
        "Stable Customers",
        "Cash Advance Heavy Users",
        "Installment Shoppers",
    ]
    naming, truth = names_for(archetypes, seed=7)
    got = {n.segment: n.name for n in naming.names}
    assert "Low Engagement Users" not in got.values()
    assert got == truth


def test_archetypes_use_only_the_features_present():
    present = (
        "log_purchases",
        "log_cash_advance",
        "cash_advance_frequency",
        "purchases_frequency",
        "log_balance",
        "log_credit_limit",
        "full_payment_share",
    )
    X, labels, truth = customers(list(CORE_ARCHETYPES), seed=5)
    cols = [FEATURES.index(f) for f in present]
    z = segment_profiles(X[:, cols], labels, present, len(CORE_ARCHETYPES)).z
    naming = name_segments(z, present)
    assert {n.segment: n.name for n in naming.names} == truth
    # Stable Customers has two of its four terms here (payment consistency and the cash
    # advance ratio are absent): its score is the mean of those two, by hand.
    log_purchases = z[:, present.index("log_purchases")]
    full_payment = z[:, present.index("full_payment_share")]
    by_hand = (-np.abs(log_purchases) + full_payment) / 2
    np.testing.assert_allclose(naming.scores["Stable Customers"], by_hand, rtol=1e-12)


def test_the_naming_is_a_json_document_with_its_rule_and_scores():
    naming, _ = names_for(list(CORE_ARCHETYPES), seed=6)
    doc = json.loads(json.dumps(naming.to_dict(), allow_nan=False))
    assert doc["rule"].startswith("each archetype is a list of terms")
    assert len(doc["segments"]) == 4
    assert set(doc["archetype_scores"]) >= set(CORE_ARCHETYPES)


def test_profiles_of_the_wrong_shape_are_refused():
    with pytest.raises(ConfigError, match="z"):
        name_segments(np.zeros((3, 2)), FEATURES)
