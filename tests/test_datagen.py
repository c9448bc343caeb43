"""The sample-data generator: contract, determinism, realism against the real file, dirt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from scipy.stats import spearmanr

from segmentation.errors import ConfigError
from segmentation.schema import FIELDS, ID_RAW_NAME, RAW_NAMES
from training import cli
from training.data import DIRTY_KINDS, _writer, dirty_counts, generate_customers, write_customers
from training.data._params import PARAMS_PATH

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cc_general.csv"
HEADER = [ID_RAW_NAME, *RAW_NAMES]
MONEY = [
    "BALANCE",
    "PURCHASES",
    "ONEOFF_PURCHASES",
    "INSTALLMENTS_PURCHASES",
    "CASH_ADVANCE",
    "CREDIT_LIMIT",
    "PAYMENTS",
    "MINIMUM_PAYMENTS",
]
FREQUENCIES = [
    "BALANCE_FREQUENCY",
    "PURCHASES_FREQUENCY",
    "ONEOFF_PURCHASES_FREQUENCY",
    "PURCHASES_INSTALLMENTS_FREQUENCY",
    "CASH_ADVANCE_FREQUENCY",
    "PRC_FULL_PAYMENT",
]
# Stated tolerances of generated (seed 42, as many rows as the real file) against real.
QUANTILE_TOL = 0.35  # log1p money quantiles 10/25/50/75/90 %, absolute, in log units
ZERO_SHARE_TOL = 0.02  # share of exact zeros, absolute
MASS_SHARE_TOL = 0.03  # share of frequencies exactly 1, absolute
MEAN_REL_TOL = 0.25  # column means, relative (minimum payments' heavy tail: about -18 %)
SPEARMAN_TOL = 0.08  # rank correlations, absolute
SILHOUETTE_TOL = 0.05  # KMeans(4) silhouette, absolute
CLUSTER_SHARE_TOL = 0.06  # sorted KMeans(4) cluster shares, absolute each


def as_arrays(table: pa.Table) -> dict[str, np.ndarray]:
    return {
        c: np.asarray(table[c].to_numpy(zero_copy_only=False), dtype=np.float64) for c in RAW_NAMES
    }


@pytest.fixture(scope="session")
def real() -> dict[str, np.ndarray]:
    return as_arrays(pacsv.read_csv(REAL))


@pytest.fixture(scope="session")
def lookalike(real) -> dict[str, np.ndarray]:
    return as_arrays(generate_customers(len(real["BALANCE"]), seed=42))


@pytest.fixture(scope="session")
def large() -> dict[str, np.ndarray]:
    return as_arrays(generate_customers(60_000, seed=3))


# --- contract -----------------------------------------------------------------------


@pytest.mark.parametrize("n_rows", [1, 100, 40_000])
def test_table_has_the_raw_header_and_types(n_rows):
    table = generate_customers(n_rows)
    assert table.column_names == HEADER
    assert table.num_rows == n_rows
    assert table.schema.field(ID_RAW_NAME).type == pa.string()
    assert all(table.schema.field(c).type == pa.float64() for c in RAW_NAMES)


def test_customer_ids_are_unique_and_shaped_like_the_source():
    ids = generate_customers(50_000)[ID_RAW_NAME].to_pylist()
    assert len(set(ids)) == len(ids)
    assert ids[0] == "C10001" and ids[-1] == "C60000"


def test_only_credit_limit_and_minimum_payments_have_nulls(large):
    nullable = {f.raw_name for f in FIELDS if f.nullable}
    assert nullable == {"CREDIT_LIMIT", "MINIMUM_PAYMENTS"}
    for name, values in large.items():
        assert np.isnan(values).any() == (name in nullable), name


def test_every_value_is_within_the_schema_hard_bounds(large):
    for f in FIELDS:
        v = large[f.raw_name][~np.isnan(large[f.raw_name])]
        assert v.min() >= f.minimum and v.max() <= f.maximum, f.raw_name
        if f.kind == "integer":
            assert np.array_equal(v, np.round(v)), f.raw_name


# --- determinism ----------------------------------------------------------------------


def test_same_seed_gives_the_same_table_and_other_seeds_differ():
    a, b, c = (generate_customers(5_000, seed=s) for s in (11, 11, 12))
    assert a.equals(b)
    assert not a.equals(c)


@pytest.mark.parametrize(("short", "long"), [(100, 1_000), (32_768, 32_769), (40_000, 70_000)])
def test_rows_do_not_depend_on_how_many_are_generated(short, long):
    assert generate_customers(long).slice(0, short).equals(generate_customers(short))


def test_thread_count_does_not_change_the_rows():
    one = pa.concat_tables(_writer.iter_tables(70_000, 5, 0.0, text=True, workers=1))
    two = pa.concat_tables(_writer.iter_tables(70_000, 5, 0.0, text=True, workers=2))
    assert one.equals(two)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_bytes_depend_on_the_seed_only_not_on_chunk_size(tmp_path, suffix):
    n = 300_000  # more than two row groups of 131,072
    a = write_customers(tmp_path / f"a{suffix}", n, seed=9, chunk_rows=1_000)
    b = write_customers(tmp_path / f"b{suffix}", n, seed=9, chunk_rows=1_000_000)
    assert a.read_bytes() == b.read_bytes()


# --- files ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".pq"])
def test_written_file_reads_back_as_the_generated_table(tmp_path, suffix):
    path = write_customers(tmp_path / "deep" / f"customers{suffix}", 2_000, seed=4)
    if suffix == ".csv":
        types = {c: pa.float64() for c in RAW_NAMES} | {ID_RAW_NAME: pa.string()}
        back = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
        assert path.read_text().splitlines()[0] == ",".join(HEADER)
    else:
        back = pq.read_table(path)
    assert back.equals(generate_customers(2_000, seed=4))
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_failed_write_leaves_no_file_and_no_temporary(tmp_path, monkeypatch):
    def explode(*args):
        raise OSError("disk full")

    monkeypatch.setattr(_writer, "_write", explode)
    with pytest.raises(OSError, match="disk full"):
        write_customers(tmp_path / "c.csv", 1_000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: write_customers(p / "c.txt", 10), "suffix"),
        (lambda p: write_customers(p / "c.csv", 10, fmt="json"), "format"),
        (lambda p: write_customers(p / "c.csv", 0), "n_rows"),
        (lambda p: write_customers(p / "c.csv", 10, chunk_rows=0), "chunk_rows"),
        (lambda p: generate_customers(10, dirty_fraction=0.9), "dirty_fraction"),
        (lambda p: generate_customers(2.5), "n_rows"),
    ],
)
def test_bad_arguments_raise_config_error_naming_the_argument(tmp_path, call, message):
    with pytest.raises(ConfigError, match=message):
        call(tmp_path)


def test_generate_command_writes_the_configured_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEGMENTATION_DATA", str(tmp_path / "var" / "customers.parquet"))
    monkeypatch.setenv("SEGMENTATION_SAMPLE_ROWS", "1234")
    assert cli.main(["generate", "--seed", "8"]) == 0
    out = capsys.readouterr().out
    assert "1,234 customers" in out and "customers.parquet" in out
    written = pq.read_table(tmp_path / "var" / "customers.parquet")
    assert written.equals(generate_customers(1234, seed=8))


def test_generate_command_reports_bad_arguments_without_a_traceback(tmp_path, capsys):
    assert cli.main(["generate", "--rows", "0", "--output", str(tmp_path / "c.csv")]) == 2
    assert "n_rows" in capsys.readouterr().err


def test_fitted_parameters_hold_figures_not_rows():
    doc = json.loads(PARAMS_PATH.read_text())
    assert PARAMS_PATH.stat().st_size < 200_000
    assert "C1" not in PARAMS_PATH.read_text()  # no customer id
    assert doc["source"]["rows"] == 8950 and doc["source"]["columns"] == HEADER
    assert sum(p["share"] for p in doc["patterns"]) == pytest.approx(1.0)


# --- constraints ------------------------------------------------------------------------


def test_frequencies_sit_on_the_months_over_tenure_grid(large):
    tenure = large["TENURE"]
    assert set(np.unique(tenure)) <= set(range(6, 13))
    for name in FREQUENCIES:
        den = np.minimum(tenure, 11) if name == "BALANCE_FREQUENCY" else tenure
        months = large[name] * den
        assert np.allclose(months, np.round(months), atol=1e-4), name
        limit = 1.5 if name == "CASH_ADVANCE_FREQUENCY" else 1.0
        assert large[name].min() >= 0 and large[name].max() <= limit, name


def test_zeros_agree_across_amounts_frequencies_and_counts(large):
    d = large
    assert np.array_equal(d["ONEOFF_PURCHASES"] == 0, d["ONEOFF_PURCHASES_FREQUENCY"] == 0)
    assert np.array_equal(
        d["INSTALLMENTS_PURCHASES"] == 0, d["PURCHASES_INSTALLMENTS_FREQUENCY"] == 0
    )
    assert np.array_equal(d["CASH_ADVANCE"] == 0, d["CASH_ADVANCE_TRX"] == 0)
    assert np.array_equal(d["CASH_ADVANCE"] == 0, d["CASH_ADVANCE_FREQUENCY"] == 0)
    assert np.array_equal(d["PURCHASES_FREQUENCY"] == 0, d["PURCHASES_TRX"] == 0)
    assert np.array_equal(d["BALANCE"] == 0, d["BALANCE_FREQUENCY"] == 0)


def test_counts_cover_the_active_months(large):
    d, t = large, large["TENURE"]
    assert np.all(d["PURCHASES_TRX"] >= np.round(d["PURCHASES_FREQUENCY"] * t))
    assert np.all(d["CASH_ADVANCE_TRX"] >= np.round(d["CASH_ADVANCE_FREQUENCY"] * t))
    assert np.all(
        d["PURCHASES_FREQUENCY"] + 1e-6
        >= np.maximum(d["ONEOFF_PURCHASES_FREQUENCY"], d["PURCHASES_INSTALLMENTS_FREQUENCY"])
    )


@pytest.mark.parametrize(
    ("quirk", "low", "high"),
    [
        # real: 19 of 8,950 rows, 313 of 8,950, 8 of 8,950, 227 of 8,950, 7,584 of 8,950
        ("purchases_not_sum", 0.0005, 0.005),
        ("minimum_payments_missing", 0.030, 0.040),
        ("cash_advance_frequency_above_1", 0.0002, 0.002),
        ("balance_above_limit", 0.020, 0.031),
        ("tenure_12", 0.83, 0.865),
    ],
)
def test_published_quirks_appear_at_their_real_share(large, quirk, low, high):
    d = large
    rows = {
        "purchases_not_sum": np.abs(
            d["ONEOFF_PURCHASES"] + d["INSTALLMENTS_PURCHASES"] - d["PURCHASES"]
        )
        > 0.005,
        "minimum_payments_missing": np.isnan(d["MINIMUM_PAYMENTS"]),
        "cash_advance_frequency_above_1": d["CASH_ADVANCE_FREQUENCY"] > 1,
        "balance_above_limit": d["BALANCE"] > d["CREDIT_LIMIT"],
        "tenure_12": d["TENURE"] == 12,
    }[quirk]
    assert low <= rows.mean() <= high


def test_zero_payments_always_come_with_missing_minimum_payments(large):
    zero = large["PAYMENTS"] == 0
    assert zero.sum() > 0
    assert np.isnan(large["MINIMUM_PAYMENTS"][zero]).all()


# --- realism against the real file --------------------------------------------------------


@pytest.mark.parametrize("name", MONEY)
def test_money_marginals_match_the_real_file(real, lookalike, name):
    r, g = real[name], lookalike[name]
    qs = [0.10, 0.25, 0.50, 0.75, 0.90]
    diff = np.nanquantile(np.log1p(g), qs) - np.nanquantile(np.log1p(r), qs)
    assert np.abs(diff).max() <= QUANTILE_TOL
    assert abs(np.mean(g == 0) - np.mean(r == 0)) <= ZERO_SHARE_TOL
    assert abs(np.nanmean(g) / np.nanmean(r) - 1) <= MEAN_REL_TOL


@pytest.mark.parametrize("name", [*FREQUENCIES, "CASH_ADVANCE_TRX", "PURCHASES_TRX", "TENURE"])
def test_frequency_and_count_marginals_match_the_real_file(real, lookalike, name):
    r, g = real[name], lookalike[name]
    assert abs(np.mean(g == 0) - np.mean(r == 0)) <= ZERO_SHARE_TOL
    assert abs(np.mean(g) / np.mean(r) - 1) <= MEAN_REL_TOL
    if name in FREQUENCIES:
        assert abs(np.mean(g == 1) - np.mean(r == 1)) <= MASS_SHARE_TOL


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("PURCHASES", "ONEOFF_PURCHASES"),
        ("PURCHASES", "INSTALLMENTS_PURCHASES"),
        ("CASH_ADVANCE", "CASH_ADVANCE_FREQUENCY"),
        ("CASH_ADVANCE", "CASH_ADVANCE_TRX"),
        ("PAYMENTS", "BALANCE"),
        ("BALANCE", "CREDIT_LIMIT"),
        ("PURCHASES", "PURCHASES_TRX"),
        ("BALANCE", "MINIMUM_PAYMENTS"),
        ("PRC_FULL_PAYMENT", "BALANCE"),
        ("BALANCE", "CASH_ADVANCE"),
    ],
)
def test_rank_correlations_match_the_real_file(real, lookalike, a, b):
    def rho(d):
        ok = ~(np.isnan(d[a]) | np.isnan(d[b]))
        return spearmanr(d[a][ok], d[b][ok]).statistic

    assert abs(rho(lookalike) - rho(real)) <= SPEARMAN_TOL


@pytest.mark.slow
def test_segmentation_of_generated_data_finds_structure_like_the_real_data(real, lookalike):
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    def structure(d):
        columns = []
        for name in RAW_NAMES:
            v = np.where(np.isnan(d[name]), np.nanmedian(d[name]), d[name])
            columns.append(np.log1p(v) if name in MONEY or name.endswith("_TRX") else v)
        x = np.column_stack(columns)
        x = (x - x.mean(axis=0)) / x.std(axis=0)
        labels = KMeans(4, n_init=4, random_state=0).fit_predict(x)
        score = silhouette_score(x, labels, sample_size=4_000, random_state=0)
        return score, np.sort(np.bincount(labels) / len(x))

    real_silhouette, real_shares = structure(real)
    gen_silhouette, gen_shares = structure(lookalike)
    print(f"silhouette real {real_silhouette:.3f} generated {gen_silhouette:.3f}")
    print(f"cluster shares real {real_shares.round(3)} generated {gen_shares.round(3)}")
    assert abs(gen_silhouette - real_silhouette) <= SILHOUETTE_TOL
    assert np.abs(gen_shares - real_shares).max() <= CLUSTER_SHARE_TOL


# --- dirty rows ---------------------------------------------------------------------------


def classify(table: pa.Table) -> dict[str, int]:
    """Count rows per defect with the rules quarantine applies (independent of _dirty)."""
    text = {c: table[c].to_pylist() for c in HEADER}
    found = dict.fromkeys(DIRTY_KINDS, 0)
    ids = [i for i in text[ID_RAW_NAME] if i is not None]
    found["duplicate_id"] = len(ids) - len(set(ids))
    found["missing_id"] = text[ID_RAW_NAME].count(None)
    by_field = {f.raw_name: f for f in FIELDS}
    for row in range(table.num_rows):
        for name in RAW_NAMES:
            value, field = text[name][row], by_field[name]
            if value is None:
                found["null_required"] += not field.nullable
                continue
            try:
                x = float(value)
            except ValueError:
                found["non_numeric_text"] += 1
                continue
            if name == "TENURE" and not 1 <= x <= 12:
                found["tenure_out_of_range"] += 1
            elif name in FREQUENCIES and not field.minimum <= x <= field.maximum:
                found["frequency_out_of_range"] += 1
            elif name in MONEY and x < 0:
                found["negative_money"] += 1
    return found


@pytest.mark.parametrize(("n_rows", "fraction"), [(7_000, 0.01), (40_000, 0.003), (500, 0.013)])
def test_dirty_rows_of_every_kind_appear_exactly_as_counted(n_rows, fraction):
    table = generate_customers(n_rows, seed=2, dirty_fraction=fraction)
    assert all(t == pa.string() for t in table.schema.types)
    expected = dirty_counts(n_rows, fraction)
    assert sum(expected.values()) == round(n_rows * fraction)
    assert classify(table) == expected


def test_dirty_counts_split_the_total_evenly_in_kind_order():
    assert dirty_counts(1_000, 0.01) == dict(zip(DIRTY_KINDS, [2, 2, 2, 1, 1, 1, 1], strict=True))
    assert dirty_counts(1_000, 0.0) == dict.fromkeys(DIRTY_KINDS, 0)


def test_dirty_data_is_deterministic_and_only_the_dirty_rows_change():
    clean = generate_customers(3_000, seed=6)
    dirty = generate_customers(3_000, seed=6, dirty_fraction=0.02)
    assert dirty.equals(generate_customers(3_000, seed=6, dirty_fraction=0.02))
    changed = np.zeros(3_000, dtype=bool)
    for name in HEADER:
        pairs = zip(clean[name].to_pylist(), dirty[name].to_pylist(), strict=True)
        changed |= np.array([not _same(name, before, after) for before, after in pairs])
    assert changed.sum() == round(3_000 * 0.02)


def _same(name: str, before, after: str | None) -> bool:
    if before is None or after is None or name == ID_RAW_NAME:
        return before == after
    try:
        return float(after) == before
    except ValueError:
        return False


def test_dirty_csv_reads_back_as_the_dirty_table(tmp_path):
    path = write_customers(tmp_path / "dirty.csv", 5_000, seed=1, dirty_fraction=0.02)
    # Only blank is null: Arrow's default would also read the injected "n/a" as null.
    options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(HEADER, pa.string()),
        strings_can_be_null=True,
        null_values=[""],
    )
    back = pacsv.read_csv(path, convert_options=options)
    assert back.equals(generate_customers(5_000, seed=1, dirty_fraction=0.02))
