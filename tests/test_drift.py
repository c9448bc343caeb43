"""Drift monitoring: effect sizes against hand-computed values and numpy, and the whole
check on generated customers (a resample does not act; a known shift does, and names the
features it changed)."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pyarrow.csv as pcsv
import pytest
from fixtures.workspace import workspace_settings

from segmentation.config import DriftThresholds
from segmentation.store import open_store
from training.cli import main
from training.data import generate_customers, shift_customers, write_customers
from training.model.params import TrainingParams
from training.monitoring.current import feature_histograms
from training.monitoring.drift import Signal, judge
from training.monitoring.measures import bin_counts, js_distance, psi
from training.train import train_and_publish

#: Features computed from the purchase and cash-advance columns the shifts change.
PURCHASE_FEATURES = {
    "log_purchases", "purchases_per_month", "purchases_frequency", "average_ticket",
}  # fmt: skip


def test_psi_equals_the_hand_computed_value():
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.17329 + 0.10137
    assert psi(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(0.27465, abs=1e-3)
    assert psi(np.array([0.2, 0.8]), np.array([0.2, 0.8])) == pytest.approx(0.0, abs=1e-12)


def test_psi_of_an_empty_bin_is_finite_thanks_to_smoothing():
    assert np.isfinite(psi(np.array([1.0, 0.0]), np.array([0.0, 1.0])))


@pytest.mark.parametrize(
    ("reference", "current", "expected"),
    [
        ([0.5, 0.5], [0.5, 0.5], 0.0),
        ([1.0, 0.0], [0.0, 1.0], 1.0),
        ([0.5, 0.5], [1.0, 0.0], 0.5579),
    ],
)
def test_jensen_shannon_distance_matches_its_definition(reference, current, expected):
    # sqrt(JSD) with base-2 logs: 0 when equal, 1 when disjoint, 0.5579 for (1/2,1/2) vs (1,0).
    got = js_distance(np.array(reference), np.array(current))
    assert got == pytest.approx(expected, abs=2e-3)


def test_jensen_shannon_distance_equals_scipys_on_smooth_distributions():
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(5)
    p, q = rng.dirichlet(np.ones(10)), rng.dirichlet(np.ones(10))
    assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-3)


def test_bin_counts_equal_numpy_histogram_and_clamp_values_outside_the_range():
    rng = np.random.default_rng(0)
    values = rng.normal(size=10_000)
    edges = list(np.quantile(values, np.linspace(0, 1, 11)))
    counts, nulls = bin_counts(values, edges)
    np.testing.assert_array_equal(counts, np.histogram(values, bins=edges)[0])
    assert nulls == 0
    outside, nulls = bin_counts(np.array([-1e9, 1e9, np.nan, np.inf]), edges)
    assert outside[0] == 1 and outside[-1] == 1 and outside.sum() == 2 and nulls == 2


def test_duckdb_histograms_equal_numpy_on_the_same_bins():
    rng = np.random.default_rng(1)
    x = np.where(rng.random(5_000) < 0.1, np.nan, rng.lognormal(size=5_000))
    edges = [float(e) for e in np.nanquantile(x, np.linspace(0, 1, 11))]
    with duckdb.connect() as con:
        con.execute("create table customer_features (x double)")
        con.executemany("insert into customer_features values (?)", [[v] for v in x.tolist()])
        con.execute("update customer_features set x = null where isnan(x)")
        rows, hist = feature_histograms(con, {"x": {"bin_edges": edges}})
    assert rows == 5_000
    np.testing.assert_array_equal(hist["x"].counts, np.histogram(x[~np.isnan(x)], edges)[0])
    assert hist["x"].nulls == int(np.isnan(x).sum())


def _signal(level: str) -> list[Signal]:
    return [Signal("x", "feature", level)]


@pytest.mark.parametrize(
    ("previous", "now", "level", "streak"),
    [
        ([], "act", "warn", 1),
        (["act"], "act", "act", 2),
        (["act", "warn"], "act", "warn", 1),
        (["act", "act"], "warn", "warn", 0),
        (["act"], "none", "none", 0),
    ],
)
def test_act_needs_consecutive_act_level_checks(previous, now, level, streak):
    result = judge("v1", 10, _signal(now), previous, DriftThresholds(persistence=2))
    assert (result.level, result.raw_level, result.persisted_checks) == (level, now, streak)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A model trained on generated customers, and customer files to check against it."""
    root = tmp_path_factory.mktemp("drift")
    write_customers(root / "train.csv", 8_000, seed=1)
    settings = workspace_settings(root, root / "train.csv")
    train_and_publish(settings, TrainingParams(seed=3, select=False, k=4, stability_boot=2))
    fresh = generate_customers(8_000, seed=99)  # the same population, other customers
    pcsv.write_csv(fresh, root / "resample.csv")
    pcsv.write_csv(shift_customers(fresh, ("cash_advance", "no_purchases")), root / "shift.csv")
    pcsv.write_csv(shift_customers(fresh, ("cash_advance",)), root / "cash.csv")
    return root, settings


@pytest.mark.slow
def test_a_resample_of_the_training_population_does_not_act(served):
    from training.monitoring.check import check_drift

    root, settings = served
    check = check_drift(settings, data=str(root / "resample.csv"), record=False)
    assert check.result.raw_level != "act"
    assert all(s.psi < DriftThresholds().psi_act for s in check.result.signals if s.psi)


@pytest.mark.slow
def test_a_known_shift_is_detected_and_the_changed_features_are_named(served):
    from training.monitoring.check import check_drift

    root, settings = served
    check = check_drift(settings, data=str(root / "shift.csv"), record=False)
    assert check.result.raw_level == "act"
    drifting = {s.name for s in check.result.drifting if s.kind == "feature"}
    assert drifting >= PURCHASE_FEATURES
    # Nothing the shift left alone drifts: tenure, balance, limits, payments.
    untouched = {"tenure", "log_balance", "log_credit_limit", "log_payments", "balance_frequency"}
    assert not drifting & untouched
    names = {s.name: s for s in check.result.signals}
    assert names["segment_shares"].level == "act"
    assert names["atypical_share"].current > names["atypical_share"].reference


@pytest.mark.slow
def test_tripled_cash_advances_move_log_cash_advance_most(served):
    from training.monitoring.check import check_drift

    root, settings = served
    check = check_drift(settings, data=str(root / "cash.csv"), record=False)
    features = [s for s in check.result.signals if s.kind == "feature"]
    assert max(features, key=lambda s: s.psi).name == "log_cash_advance"


@pytest.mark.slow
def test_the_cli_warns_then_acts_when_the_shift_persists_and_records_each_check(
    served, monkeypatch, capsys
):
    root, settings = served
    store_root = root / "persist-store"
    store_root.mkdir()
    # A store of its own with the same model, so earlier checks of other tests do not count.
    src = open_store(settings.model_store)
    dst = open_store(str(store_root))
    for key in src.list("versions/"):
        dst.write_new(key, src.read(key))
    pointer, _ = src.read_pointer()
    dst.swap_pointer(pointer, None)
    for name, value in {
        "SEGMENTATION_MODEL_STORE": str(store_root),
        "DBT_TARGET_PATH": settings.dbt_target_path,
        "DBT_LOG_PATH": settings.dbt_log_path,
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["drift", "--data", str(root / "shift.csv")]) == 1
    assert "drift: warn (raw act)" in capsys.readouterr().out
    assert main(["drift", "--data", str(root / "shift.csv"), "--json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["level"] == "act" and doc["persisted_checks"] == 2
    records = sorted(k for k in dst.list("drift/") if k.endswith("check.json"))
    assert len(records) == 2
    report = dst.read(doc["report"]).decode()
    assert report.count("data:image/png;base64,") >= 3  # drifting features, shares, atypical
    assert main(["drift", "--data", str(root / "resample.csv"), "--no-record"]) == 0
    assert len([k for k in dst.list("drift/") if k.endswith("check.json")]) == 2
