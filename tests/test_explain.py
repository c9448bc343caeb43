"""Segment explanations and the report's selection plots."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from segmentation.errors import ConfigError
from training.clustering.selection import SelectionConfig, select_model
from training.clustering.stability import assess_stability
from training.clustering.surrogate import ClusterSpec
from training.release import plots
from training.segments.explain import describe, explain_segments, segment_profiles

FEATURES = ("log_purchases", "cash_advance_ratio", "purchases_frequency", "tenure")


@pytest.fixture(scope="module")
def population() -> tuple[np.ndarray, np.ndarray]:
    """Segment 1 draws cash (high ratio, low purchases); segment 0 is everyone else."""
    rng = np.random.default_rng(0)
    base = rng.normal([6.0, 0.1, 0.6, 12.0], [1.0, 0.05, 0.15, 0.1], size=(900, 4))
    cash = rng.normal([2.0, 0.8, 0.1, 12.0], [1.0, 0.05, 0.05, 0.1], size=(100, 4))
    return np.vstack([base, cash]), np.repeat([0, 1], [900, 100])


def test_sizes_and_shares_count_every_customer(population):
    X, labels = population
    segments = explain_segments(X, labels, FEATURES, 2)
    assert [s.size for s in segments] == [900, 100]
    assert [s.share for s in segments] == pytest.approx([0.9, 0.1])


def test_the_most_distinguishing_features_lead_the_description(population):
    X, labels = population
    cash = explain_segments(X, labels, FEATURES, 2)[1]
    assert set(cash.top_features[:3]) == {
        "log_purchases",
        "cash_advance_ratio",
        "purchases_frequency",
    }
    assert cash.smd["cash_advance_ratio"] > 3 and cash.smd["log_purchases"] < -3
    assert "much higher cash advance ratio" in cash.description.lower()
    assert "much lower purchases" in cash.description
    assert cash.description.endswith("10% of customers")
    assert "tenure" not in cash.description  # no difference, no words


def test_means_are_compared_with_the_overall_mean(population):
    X, labels = population
    cash = explain_segments(X, labels, FEATURES, 2)[1]
    overall = X[:, 1].mean()
    assert cash.means["cash_advance_ratio"] == pytest.approx(X[labels == 1, 1].mean())
    assert cash.ratio["cash_advance_ratio"] == pytest.approx(
        cash.means["cash_advance_ratio"] / overall
    )
    assert cash.z["cash_advance_ratio"] == pytest.approx(
        (cash.means["cash_advance_ratio"] - overall) / X[:, 1].std()
    )


def test_missing_values_and_zero_means_are_handled():
    X = np.array([[0.0, 1.0], [0.0, np.nan], [0.0, 3.0], [0.0, 5.0]])
    segments = explain_segments(X, np.array([0, 0, 1, 1]), ("zero", "x"), 2)
    assert segments[0].ratio["zero"] is None  # overall mean 0: no ratio
    assert segments[0].means["x"] == 1.0 and segments[1].means["x"] == 4.0
    assert json.loads(json.dumps([s.to_dict() for s in segments], allow_nan=False))


@pytest.mark.parametrize(
    ("smd", "words"),
    [
        ([1.5, 0.0], "Much higher a (+1.5 SD)"),
        ([-0.7, 0.0], "Lower a (-0.7 SD)"),
        ([0.3, 0.0], "Slightly higher a (+0.3 SD)"),
        ([0.05, -0.1], "Close to the average customer on every feature"),
    ],
)
def test_descriptions_grade_the_difference_in_words(smd, words):
    assert describe(np.array(smd), ("a", "b"), 0.25).startswith(words)


def test_labels_that_do_not_fit_the_features_are_refused():
    with pytest.raises(ConfigError, match="labels"):
        segment_profiles(np.zeros((4, 2)), np.zeros(3, dtype=int), ("a", "b"), 1)


def _is_png(text: str) -> bool:
    return base64.b64decode(text, validate=True).startswith(b"\x89PNG\r\n\x1a\n")


@pytest.fixture(scope="module")
def selection(population):
    X, _ = population
    config = SelectionConfig(k_values=(2, 3, 4), fit_rows=1_000, eval_rows=400, n_boot=2)
    return select_model(X[:, :3], random_state=0, config=config)


def test_every_report_plot_is_an_embeddable_png(population, selection):
    X, labels = population
    stability = assess_stability(ClusterSpec("kmeans", 2), X[:400], n_boot=2, random_state=0)
    prof = segment_profiles(X, labels, FEATURES, 2)
    names = ["Everyone else", "Cash Advance Heavy Users"]
    figures = [
        plots.plot_k_sweep(selection.k_scores, chosen_k=selection.chosen.n_clusters),
        plots.plot_algorithms(selection.algorithm_scores, selection.chosen.label),
        plots.plot_stability(stability, names),
        plots.plot_profile_heatmap(prof.z, FEATURES, names),
    ]
    assert all(_is_png(f) for f in figures)
    assert len(set(figures)) == len(figures)
