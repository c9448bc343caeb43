"""`dbt build` on DuckDB: the real file, hand-written dirty rows, Parquet, failing tests.

Every build writes its warehouse, target/ and logs/ under pytest's tmp dirs, never into
the source tree.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import duckdb
import pytest

from segmentation import ConfigError, FeatureBuildError, Settings
from segmentation.schema import FIELDS, ID_RAW_NAME, RAW_NAMES
from training import cli
from training.data import dirty_counts, write_customers
from training.features import FEATURE_SELECTION, build_features
from training.features._dbt import dbt_args, invoke

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cc_general.csv"
EXPECTED_REAL_WARNINGS = {
    "stg_customers_cash_advance_frequency_expected_maximum": 8,
    "warn_balance_above_credit_limit": 227,
    "warn_purchases_not_sum_of_parts": 19,
}

#: One valid customer; each dirty case overrides a few raw columns.
VALID = {
    "BALANCE": "1000",
    "BALANCE_FREQUENCY": "0.9",
    "PURCHASES": "600",
    "ONEOFF_PURCHASES": "200",
    "INSTALLMENTS_PURCHASES": "400",
    "CASH_ADVANCE": "300",
    "PURCHASES_FREQUENCY": "0.5",
    "ONEOFF_PURCHASES_FREQUENCY": "0.25",
    "PURCHASES_INSTALLMENTS_FREQUENCY": "0.416667",
    "CASH_ADVANCE_FREQUENCY": "0.166667",
    "CASH_ADVANCE_TRX": "3",
    "PURCHASES_TRX": "12",
    "CREDIT_LIMIT": "4000",
    "PAYMENTS": "900",
    "MINIMUM_PAYMENTS": "300",
    "PRC_FULL_PAYMENT": "0.25",
    "TENURE": "12",
}
ZERO = {name: "0" for name in RAW_NAMES} | {"TENURE": "12", "CREDIT_LIMIT": "1000"}

TWO_REASONS = "balance: minimum 0; tenure: minimum 1"
CASH_ADVANCE_MAX = "cash_advance_frequency: maximum 2"
#: (case id, customer id, raw overrides, expected rejection reason or None when staged).
#: Rows are written in this order, so a case's file position is its index + 1.
CASES: list[tuple[str, str, dict[str, str], str | None]] = [
    ("valid", "C1", {}, None),
    ("negative_money", "C2", {"BALANCE": "-5"}, "balance: minimum 0"),
    ("frequency_above_one", "C3", {"PURCHASES_FREQUENCY": "1.5"}, "purchases_frequency: maximum 1"),
    ("tenure_zero", "C4", {"TENURE": "0"}, "tenure: minimum 1"),
    ("tenure_thirteen", "C5", {"TENURE": "13"}, "tenure: maximum 12"),
    ("tenure_fraction", "C6", {"TENURE": "12.5"}, "tenure: not an integer"),
    ("text_in_number", "C7", {"PAYMENTS": "abc"}, "payments: not a number"),
    ("nan_text", "C8", {"BALANCE": "NaN"}, "balance: not a number"),
    ("infinity_text", "C9", {"CASH_ADVANCE": "inf"}, "cash_advance: not a number"),
    ("missing_required", "C10", {"PAYMENTS": ""}, "payments: missing"),
    ("missing_nullable", "C11", {"MINIMUM_PAYMENTS": ""}, None),
    ("missing_id", "", {}, "customer_id: missing"),
    ("blank_id", "   ", {}, "customer_id: missing"),
    ("first_of_duplicate", "D1", {}, None),
    ("duplicate", "D1", {"BALANCE": "5"}, "customer_id: duplicate"),
    ("rejected_then_resent", "R1", {"BALANCE": "-1"}, "balance: minimum 0"),
    ("resent_valid", "R1", {}, None),
    (
        "two_failures",
        "C12",
        {"BALANCE": "-1", "TENURE": "0"},
        "balance: minimum 0; tenure: minimum 1",
    ),
    ("cash_advance_quirk", "C13", {"CASH_ADVANCE_FREQUENCY": "1.5"}, None),
    (
        "cash_advance_hard_max",
        "C14",
        {"CASH_ADVANCE_FREQUENCY": "2.5"},
        "cash_advance_frequency: maximum 2",
    ),
    ("count_too_large", "C15", {"CASH_ADVANCE_TRX": "10000000"}, "cash_advance_trx: maximum 1e6"),
    ("padded_number", "C16", {"BALANCE": " 100 "}, None),
    ("zero_credit_limit", "C17", {"CREDIT_LIMIT": "0"}, None),
    ("zero_minimum_payment", "C18", {"MINIMUM_PAYMENTS": "0"}, None),
    ("all_zero", "C19", ZERO, None),
    ("missing_credit_limit", "C20", {"CREDIT_LIMIT": ""}, None),
    # Within the bounds but not whole: only the integer rule rejects it.
    ("count_fraction", "C21", {"PURCHASES_TRX": "2.5"}, "purchases_trx: not an integer"),
    ("blank_nullable", "C22", {"CREDIT_LIMIT": "  "}, None),
    ("negative_infinity_text", "C23", {"PAYMENTS": "-inf"}, "payments: not a number"),
    ("money_at_maximum", "C24", {"BALANCE": "1e9"}, None),
]
ROW_OF = {case: i + 1 for i, (case, *_rest) in enumerate(CASES)}


def write_csv(path: Path, rows: list[tuple[str, dict[str, str]]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([ID_RAW_NAME, *RAW_NAMES])
        for customer_id, overrides in rows:
            values = VALID | overrides
            writer.writerow([customer_id, *(values[name] for name in RAW_NAMES)])
    return path


def settings_for(tmp: Path, data: Path) -> Settings:
    return Settings(
        data=str(data), warehouse=str(tmp / "warehouse.duckdb"), model_store=str(tmp / "store")
    )


def dbt_paths(tmp: Path) -> dict[str, Path]:
    return {"target_path": tmp / "target", "log_path": tmp / "logs"}


def query(settings: Settings, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(settings.warehouse)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def real_build(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    settings = settings_for(tmp, REAL_DATA)
    return settings, build_features(settings, quiet=True, **dbt_paths(tmp))


@pytest.fixture(scope="module")
def dirty_build(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dirty")
    data = write_csv(tmp / "dirty.csv", [(cid, overrides) for _, cid, overrides, _ in CASES])
    settings = settings_for(tmp, data)
    return settings, build_features(settings, quiet=True, **dbt_paths(tmp))


@pytest.mark.slow
def test_real_file_builds_with_no_quarantined_rows_and_only_known_warnings(real_build):
    _, result = real_build
    assert result.success
    assert (result.staged_rows, result.quarantined_rows, result.feature_rows) == (8950, 0, 8950)
    found = dict(line.rsplit(": ", 1) for line in result.warnings)
    assert {name: int(n.split()[0]) for name, n in found.items()} == EXPECTED_REAL_WARNINGS


@pytest.mark.slow
def test_real_file_stages_the_published_mean_balance_and_missing_counts(real_build):
    settings, _ = real_build
    [(mean_balance, missing_minimum, missing_limit)] = query(
        settings,
        "select avg(balance), count(*) - count(minimum_payments), count(*) - count(credit_limit)"
        " from stg_customers",
    )
    assert mean_balance == pytest.approx(1564.47, abs=0.01)
    assert (missing_minimum, missing_limit) == (313, 1)


@pytest.mark.slow
def test_staged_columns_have_the_schema_names_and_types(real_build):
    settings, _ = real_build
    described = query(settings, "select column_name, column_type from (describe stg_customers)")
    expected = [("customer_id", "VARCHAR")] + [(f.name, f.sql_type.upper()) for f in FIELDS]
    assert described == expected


@pytest.mark.slow
@pytest.mark.parametrize(("case", "customer_id", "overrides", "reason"), CASES, ids=ROW_OF)
def test_each_dirty_row_is_staged_or_quarantined_with_its_reason(
    dirty_build, case, customer_id, overrides, reason
):
    settings, _ = dirty_build
    found = query(
        settings,
        "select rejection_reason from stg_customers__quarantine where source_row_number = ?",
        [ROW_OF[case]],
    )
    assert found == ([] if reason is None else [(reason,)])


@pytest.mark.slow
def test_dirty_file_accounts_for_every_row_and_summarises_reasons(dirty_build):
    _, result = dirty_build
    expected_rejected = [reason for *_, reason in CASES if reason is not None]
    assert result.quarantined_rows == len(expected_rejected)
    assert result.staged_rows == len(CASES) - len(expected_rejected)
    assert result.feature_rows == result.staged_rows
    assert result.quarantine_reasons["balance: minimum 0"] == 3  # incl. the two-rule row
    assert result.quarantine_reasons["customer_id: missing"] == 2
    assert sum(result.quarantine_reasons.values()) == len(expected_rejected) + 1


@pytest.mark.slow
def test_quarantine_keeps_the_raw_text_of_rejected_rows(dirty_build):
    settings, _ = dirty_build
    [(payments, balance)] = query(
        settings,
        "select payments, balance from stg_customers__quarantine where source_row_number = ?",
        [ROW_OF["text_in_number"]],
    )
    assert (payments, balance) == ("abc", VALID["BALANCE"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "kept_balance"), [("first_of_duplicate", 1000.0), ("resent_valid", 1000.0)]
)
def test_duplicates_keep_the_first_valid_occurrence(dirty_build, case, kept_balance):
    settings, _ = dirty_build
    customer_id = CASES[ROW_OF[case] - 1][1]
    assert query(
        settings, "select balance from stg_customers where customer_id = ?", [customer_id]
    ) == [(kept_balance,)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("customer_id", "feature", "expected"),
    [
        ("C1", "credit_utilization_ratio", 0.25),
        ("C1", "purchases_per_month", 1.0),
        ("C1", "average_ticket", 50.0),
        ("C1", "oneoff_purchase_share", 1 / 3),
        ("C1", "installment_purchase_share", 2 / 3),
        ("C1", "cash_advance_ratio", 1 / 3),
        ("C1", "cash_advance_intensity", 0.25),
        ("C1", "payment_to_minimum_ratio", 3.0),
        ("C1", "payment_consistency_index", 0.625),
        ("C1", "log_balance", math.log1p(1000.0)),
        ("C1", "tenure", 12.0),
        ("C11", "payment_to_minimum_ratio", None),
        ("C11", "payment_consistency_index", None),
        ("C11", "log_minimum_payments", None),
        ("C20", "credit_utilization_ratio", None),
        ("C20", "log_credit_limit", None),
        ("C17", "credit_utilization_ratio", 5.0),  # limit 0 floored at 1, ratio capped at 5
        ("C18", "payment_to_minimum_ratio", 100.0),  # minimum 0 floored at 1, capped at 100
        ("C19", "average_ticket", 0.0),
        ("C19", "oneoff_purchase_share", 0.0),
        ("C19", "cash_advance_ratio", 0.0),
        ("C19", "payment_consistency_index", 0.0),
    ],
)
def test_features_match_hand_computed_values(dirty_build, customer_id, feature, expected):
    settings, _ = dirty_build
    [(value,)] = query(
        settings, f"select {feature} from customer_features where customer_id = ?", [customer_id]
    )
    assert value == (None if expected is None else pytest.approx(expected, rel=1e-12))


@pytest.mark.slow
def test_features_are_finite_and_null_only_where_an_input_is_missing(dirty_build):
    settings, _ = dirty_build
    columns = [
        name
        for name, dtype in query(
            settings, "select column_name, column_type from (describe customer_features)"
        )
        if dtype == "DOUBLE"
    ]
    assert len(columns) >= 15
    for column in columns:
        [(non_finite, null_without_cause)] = query(
            settings,
            f"""select count(*) filter (where not isfinite(f.{column})),
                       count(*) filter (where f.{column} is null
                                        and s.credit_limit is not null
                                        and s.minimum_payments is not null)
                from customer_features as f join stg_customers as s using (customer_id)""",
        )
        assert (non_finite, null_without_cause) == (0, 0), column


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_generated_dirty_data_builds_and_quarantines_every_injected_row(tmp_path, suffix):
    n_rows, fraction = 3_000, 0.05
    data = write_customers(tmp_path / f"dirty.{suffix}", n_rows, seed=7, dirty_fraction=fraction)
    result = build_features(settings_for(tmp_path, data), quiet=True, **dbt_paths(tmp_path))
    injected = dirty_counts(n_rows, fraction)
    reasons = result.quarantine_reasons
    assert result.quarantined_rows == sum(injected.values())
    assert result.staged_rows + result.quarantined_rows == n_rows
    assert reasons.get("customer_id: duplicate", 0) == injected["duplicate_id"]
    assert reasons.get("customer_id: missing", 0) == injected["missing_id"]
    not_a_number = sum(n for r, n in reasons.items() if r.endswith(": not a number"))
    assert not_a_number == injected["non_numeric_text"]


@pytest.mark.slow
def test_error_level_test_failure_raises_with_the_test_name(dirty_build, tmp_path):
    settings, _ = dirty_build
    # The warehouse holds the dirty file's rows; a longer raw file breaks the row balance.
    longer = write_csv(tmp_path / "longer.csv", [(cid, o) for _, cid, o, _ in CASES] * 2)
    stale = Settings(
        data=str(longer), warehouse=settings.warehouse, model_store=settings.model_store
    )
    with pytest.raises(FeatureBuildError, match="assert_no_raw_row_dropped"):
        build_features(stale, select="assert_no_raw_row_dropped", quiet=True, **dbt_paths(tmp_path))


def test_missing_data_file_is_a_config_error_naming_the_variable(tmp_path):
    settings = settings_for(tmp_path, tmp_path / "absent.csv")
    with pytest.raises(ConfigError, match="SEGMENTATION_DATA"):
        build_features(settings, **dbt_paths(tmp_path))


@pytest.mark.slow
def test_features_command_builds_parquet_and_prints_counts(tmp_path, monkeypatch, capsys):
    source = write_csv(tmp_path / "small.csv", [("P1", {}), ("P2", {"BALANCE": "-1"})])
    parquet = tmp_path / "small.parquet"
    con = duckdb.connect()
    # Typed Parquet, as a warehouse export would write it.
    con.execute(f"copy (select * from read_csv('{source}')) to '{parquet}' (format parquet)")
    con.close()
    monkeypatch.setenv("SEGMENTATION_DATA", str(parquet))
    monkeypatch.setenv("SEGMENTATION_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("SEGMENTATION_MODEL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "logs"))
    environment = dict(os.environ)
    assert cli.main(["features", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "staged: 1" in out
    assert "quarantined: 1" in out
    assert "balance: minimum 0: 1" in out
    assert "features: 1" in out
    assert dict(os.environ) == environment  # nothing writes os.environ


def _dbt(command: str, tmp: Path, select: str | None = None, extra: tuple = ()):
    """Run a dbt command that reads no data (parse, ls) with every scoring model enabled."""
    vars = {
        "segmentation_data": str(tmp / "absent.csv"),
        "segmentation_warehouse": ":memory:",
        "segmentation_model_version": "v20260101T000000Z-00000000",
    }
    paths = {"target_path": tmp / "target", "log_path": tmp / "logs"}
    return invoke(dbt_args(command, vars=vars, select=select, quiet=True, extra=extra, **paths))


def test_feature_selection_is_staging_and_features_with_all_their_tests_and_no_scoring(
    tmp_path,
):
    manifest = _dbt("parse", tmp_path).result
    layer = {
        "source.segmentation.raw.customers",
        "model.segmentation.base_customers",
        "model.segmentation.stg_customers",
        "model.segmentation.stg_customers__quarantine",
        "model.segmentation.customer_features",
    }
    tests = {
        uid
        for uid, node in manifest.nodes.items()
        if node.resource_type == "test" and set(node.depends_on.nodes) <= layer
    }
    scoring = {uid for uid in manifest.nodes if "customer_segments" in uid or "segment_prof" in uid}
    assert "test.segmentation.assert_no_raw_row_dropped" in tests  # reads the source
    assert len(scoring) > 2  # enabled by the version var: the selection must leave them out
    listed = _dbt(
        "ls",
        tmp_path,
        select=FEATURE_SELECTION,
        extra=("--resource-type", "all", "--output", "json", "--output-keys", "unique_id"),
    ).result
    assert {json.loads(line)["unique_id"] for line in listed} == layer | tests


def _large_file(tmp: Path, n_rows: int, suffix: str, planted: dict[int, tuple[str, str]]) -> Path:
    """``n_rows`` valid customers ``C<line>``; ``planted`` replaces the id and balance of
    some lines (1-based, header excluded)."""
    rows = [
        (planted[i][0], {"BALANCE": planted[i][1]}) if i in planted else (f"C{i}", {})
        for i in range(1, n_rows + 1)
    ]
    path = write_csv(tmp / "large.csv", rows)
    if suffix == "csv":
        return path
    parquet = tmp / "large.parquet"
    with duckdb.connect() as con:
        # Typed, in row groups of 20k rows: DuckDB scans them on every thread at once.
        con.execute(
            f"copy (select * from read_csv('{path}')) to '{parquet}' "
            "(format parquet, row_group_size 20000)"
        )
    return parquet


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_first_valid_occurrence_in_file_order_wins_in_a_file_read_in_parallel(tmp_path, suffix):
    # 26 MB of CSV: DuckDB splits it into chunks for its threads (a 4-thread scan without
    # a fixed-order operator returns about 90% of its rows out of line order).
    n = 300_000
    planted = {
        2: ("DUP-A", "111"),  # kept: the first occurrence...
        n - 1: ("DUP-A", "999"),  # ...over a copy near the end
        3: ("DUP-B", "-1"),  # rejected, so the later valid re-send is kept
        n: ("DUP-B", "222"),
        n - 3: ("DUP-C", "333"),  # two copies near the end: the earlier is kept
        n - 2: ("DUP-C", "444"),
    }
    data = _large_file(tmp_path, n, suffix, planted)
    settings = settings_for(tmp_path, data)
    build_features(settings, quiet=True, **dbt_paths(tmp_path))
    kept = query(
        settings,
        "select customer_id, balance from stg_customers where customer_id like 'DUP-%' order by 1",
    )
    assert kept == [("DUP-A", 111.0), ("DUP-B", 222.0), ("DUP-C", 333.0)]
    quarantined = query(
        settings,
        "select source_row_number, customer_id, rejection_reason "
        "from stg_customers__quarantine order by 1",
    )
    assert quarantined == [
        (3, "DUP-B", "balance: minimum 0"),
        (n - 2, "DUP-C", "customer_id: duplicate"),
        (n - 1, "DUP-A", "customer_id: duplicate"),
    ]
    # Every other row's number is its line in the file, which its id spells out.
    [(rows, misnumbered)] = query(
        settings,
        "select count(*), count(*) filter (where customer_id <> 'C' || source_row_number) "
        "from base_customers where customer_id not like 'DUP-%'",
    )
    assert (rows, misnumbered) == (n - len(planted), 0)


@pytest.mark.slow
def test_features_output_has_no_colour_codes_when_not_on_a_terminal(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("SEGMENTATION_DATA", str(write_csv(tmp_path / "one.csv", [("K1", {})])))
    monkeypatch.setenv("SEGMENTATION_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("SEGMENTATION_MODEL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "logs"))
    assert cli.main(["features"]) == 0  # not --quiet: dbt's progress lines are shown
    out, err = capfd.readouterr()
    assert "START sql table model main.base_customers" in out  # dbt did print
    assert "\x1b[" not in out and "\x1b[" not in err
    assert "\x1b[" not in (tmp_path / "logs" / "dbt.log").read_text()


#: Violations planted in a built warehouse, behind staging's back: (model's table, SQL
#: assignment, the rows' customer ids) -> the (column, rule) the merged test must name.
#: A row may break two rules (C2 in the features) and then counts under both.
STAGED_VIOLATIONS = [
    ("balance__value = -5", ["C1", "C2"], ("balance", "accepted_range")),
    ("tenure__value = null", ["C3"], ("tenure", "not_null")),
    ("purchases_frequency__value = 'nan'", ["C4"], ("purchases_frequency", "accepted_range")),
    ("credit_limit__value = -1", ["C5"], ("credit_limit", "accepted_range")),
    ("minimum_payments__value = null", ["C5"], None),  # nullable: no rule broken
    ("customer_id = null", ["C6"], ("customer_id", "not_null")),
]
FEATURE_VIOLATIONS = [
    ("log_balance = 22", ["C1", "C2"], ("log_balance", "accepted_range")),
    ("tenure = 0", ["C2"], ("tenure", "accepted_range")),
    ("average_ticket = null", ["C3"], ("average_ticket", "not_null")),
    ("cash_advance_ratio = 'inf'", ["C4"], ("cash_advance_ratio", "accepted_range")),
    ("payment_to_minimum_ratio = null", ["C5"], None),  # nullable: no rule broken
    ("cash_advance_frequency = 2", ["C6"], None),  # the bound itself is accepted
]


@pytest.fixture(scope="module")
def clean_build(tmp_path_factory):
    """Six valid customers C1..C6, built; tests copy the warehouse before tampering."""
    tmp = tmp_path_factory.mktemp("clean")
    data = write_csv(tmp / "clean.csv", [(f"C{i}", {}) for i in range(1, 7)])
    settings = settings_for(tmp, data)
    build_features(settings, quiet=True, **dbt_paths(tmp))
    return settings


def _tampered(clean: Settings, tmp: Path, table: str, key: str, violations: list) -> Settings:
    warehouse = tmp / "warehouse.duckdb"
    # Through the connection dbt-duckdb may still hold in this process (default settings,
    # see training.features.warehouse), so the copy includes what is not checkpointed.
    with duckdb.connect(clean.warehouse) as con:
        con.execute(f"attach '{warehouse}' as tampered")
        con.execute(f"copy from database {Path(clean.warehouse).stem} to tampered")
        for assignment, ids, _ in violations:
            marks = ", ".join("?" for _ in ids)
            con.execute(f"update tampered.{table} set {assignment} where {key} in ({marks})", ids)
        con.execute("detach tampered")
    return Settings(data=clean.data, warehouse=str(warehouse), model_store=clean.model_store)


def _expected_failures(violations: list) -> dict[tuple[str, str], int]:
    expected: dict[tuple[str, str], int] = {}
    for _, ids, broken in violations:
        if broken is not None:
            expected[broken] = expected.get(broken, 0) + len(ids)
    return expected


@pytest.mark.slow
@pytest.mark.parametrize(
    ("table", "key", "test_name", "violations"),
    [
        ("base_customers", "customer_id", "stg_customers_column_rules", STAGED_VIOLATIONS),
        ("customer_features", "customer_id", "customer_features_column_rules", FEATURE_VIOLATIONS),
    ],
    ids=["staged", "features"],
)
def test_merged_rule_test_reports_each_broken_column_and_rule_with_its_count(
    clean_build, tmp_path, table, key, test_name, violations
):
    settings = _tampered(clean_build, tmp_path, table, key, violations)
    expected = _expected_failures(violations)
    total = sum(expected.values())
    with pytest.raises(FeatureBuildError, match=rf"test {test_name}: {total} rows"):
        build_features(settings, select=test_name, quiet=True, **dbt_paths(tmp_path))
    # dbt stored the failing rows: one per (rule, row), naming the column and the rule.
    stored = query(
        settings,
        f'select column_name, rule, count(*) from "main_dbt_test__audit"."{test_name}" '
        "group by all",
    )
    assert {(column, rule): n for column, rule, n in stored} == expected


@pytest.mark.slow
def test_unique_test_counts_each_duplicated_value_once(clean_build, tmp_path):
    # C1 three times, C4 twice: two duplicated values, as dbt's own `unique` counts them.
    violations = [("customer_id = 'C1'", ["C2", "C3"], None), ("customer_id = 'C4'", ["C5"], None)]
    settings = _tampered(clean_build, tmp_path, "customer_features", "customer_id", violations)
    name = "unique_customer_features_customer_id"
    with pytest.raises(FeatureBuildError, match=rf"test {name}: 2 rows"):
        build_features(settings, select=name, quiet=True, **dbt_paths(tmp_path))
