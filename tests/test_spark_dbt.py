"""The same dbt project on Apache Spark: staged rows, quarantine and features equal DuckDB's.

One SparkSession for the whole test session (``spark_settings``); every build here is
``dbt build --target spark`` into its managed tables, compared row by row with the same
file built on DuckDB: staged rows exactly, the quarantine's positions, raw texts and
reasons exactly, features to a relative 1e-6 with NULL exactly where DuckDB has NULL.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import duckdb
import pytest
import yaml
from test_dbt_build import CASES, write_csv

from segmentation import Settings
from segmentation.schema import FIELDS, ID_RAW_NAME, RAW_NAMES
from training.data import write_customers
from training.features import (
    FEATURE_MODEL,
    QUARANTINE_MODEL,
    STAGED_MODEL,
    build_features,
    feature_names,
)
from training.features._dbt import DBT_PROJECT_DIR
from training.spark.features import build_features as build_features_on_spark
from training.spark.features import table_name
from training.spark.session import spark_conf, spark_session

pytestmark = pytest.mark.slow

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cc_general.csv"
STAGED_COLUMNS = ["customer_id", *(f.name for f in FIELDS)]
QUARANTINE_COLUMNS = ["source_row_number", *STAGED_COLUMNS, "rejection_reason"]

#: Texts where Spark's own number parsing differs from DuckDB's (or could): each must be
#: read as DuckDB reads it. (customer id, raw overrides).
EDGE_TEXTS: list[tuple[str, dict[str, str]]] = [
    ("E1", {"BALANCE": "1_000"}),  # DuckDB reads digit separators; Spark's cast does not
    ("E2", {"BALANCE": "1.5d"}),  # Java's double suffixes: Spark's cast reads them
    ("E3", {"PAYMENTS": "1.5f"}),
    ("E4", {"PURCHASES": "2.5D"}),
    ("E5", {"BALANCE": "1__0"}),
    ("E6", {"BALANCE": "_1"}),
    ("E7", {"BALANCE": "1_"}),
    ("E8", {"BALANCE": "1.5_0"}),
    ("E9", {"BALANCE": "1e1_0"}),
    ("E10", {"CASH_ADVANCE_TRX": "1e20"}),  # whole, far above bigint: maximum, not fraction
    ("E11", {"PURCHASES_TRX": "-1e19"}),
    ("E12", {"BALANCE": "+.5"}),
    ("E13", {"BALANCE": "5."}),
    ("E14", {"BALANCE": "1.e3"}),
    ("E15", {"BALANCE": "Infinity"}),
    ("E16", {"BALANCE": "-0"}),
    ("E17", {"BALANCE": "\x0c7"}),  # form feed: whitespace for both
    ("E18", {"BALANCE": "0x10"}),
    ("E19", {"BALANCE": "1,5"}),  # quoted by the CSV writer
    ("E20", {"MINIMUM_PAYMENTS": "nan"}),
    ("E21", {"TENURE": "12.0"}),
    ("E22", {"TENURE": "1e1"}),
    ("E23", {"BALANCE": "00012"}),
    ("E24", {"BALANCE": "1e400"}),  # infinite
    ("E25", {"CREDIT_LIMIT": "INF"}),
    (" E26 ", {}),  # the id is trimmed
    ("E27", {"BALANCE": "1 000"}),
    ("E28", {"PAYMENTS": "\u0661"}),  # an Arabic-Indic digit one
    ("E29", {"BALANCE": "1.7976931348623157e308"}),
    ("E30", {"BALANCE": "4.9e-324"}),
]


def _duckdb_rows(warehouse: str, table: str, columns: list[str], order: str) -> list[tuple]:
    # Default configuration: dbt-duckdb built it in this process (DuckDB's instance cache).
    with duckdb.connect(warehouse) as con:
        return con.execute(
            f'select {", ".join(columns)} from "{table}" order by {order}'
        ).fetchall()


def _spark_rows(table: str, columns: list[str], order: str) -> list[tuple]:
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    rows = spark.sql(
        f"select {', '.join(columns)} from {table_name(table)} order by {order}"
    ).collect()
    return [tuple(row) for row in rows]


def _same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b)


def _assert_same_rows(spark_rows: list[tuple], duck_rows: list[tuple], columns: list[str]):
    assert len(spark_rows) == len(duck_rows)
    for s, d in zip(spark_rows, duck_rows, strict=True):
        different = [c for c, x, y in zip(columns, s, d, strict=True) if not _same_value(x, y)]
        assert not different, f"row {d[0]!r}: {different} differ: spark {s} duckdb {d}"


def _assert_same_features(spark_rows: list[tuple], duck_rows: list[tuple], columns: list[str]):
    assert len(spark_rows) == len(duck_rows)
    for s, d in zip(spark_rows, duck_rows, strict=True):
        assert s[0] == d[0]
        for column, x, y in zip(columns[1:], s[1:], d[1:], strict=True):
            if y is None:
                assert x is None, f"{d[0]} {column}: spark {x}, duckdb NULL"
            else:
                assert x == pytest.approx(y, rel=1e-6, abs=0), f"{d[0]} {column}"


@dataclasses.dataclass(frozen=True)
class Built:
    duckdb: Settings
    spark: Settings


def _build_both(data: Path, tmp: Path, spark_settings: Settings) -> Built:
    duck = Settings(
        data=str(data),
        warehouse=str(tmp / "warehouse.duckdb"),
        dbt_target_path=str(tmp / "duck-target"),
        dbt_log_path=str(tmp / "duck-logs"),
    )
    build_features(duck, quiet=True)
    spark = dataclasses.replace(spark_settings, data=str(data))
    build_features_on_spark(spark, quiet=True)
    return Built(duck, spark)


def _assert_parity(built: Built) -> None:
    warehouse = built.duckdb.warehouse
    _assert_same_rows(
        _spark_rows(STAGED_MODEL, STAGED_COLUMNS, "customer_id"),
        _duckdb_rows(warehouse, STAGED_MODEL, STAGED_COLUMNS, "customer_id"),
        STAGED_COLUMNS,
    )
    _assert_same_rows(
        _spark_rows(QUARANTINE_MODEL, QUARANTINE_COLUMNS, "source_row_number"),
        _duckdb_rows(warehouse, QUARANTINE_MODEL, QUARANTINE_COLUMNS, "source_row_number"),
        QUARANTINE_COLUMNS,
    )
    features = ["customer_id", *feature_names()]
    _assert_same_features(
        _spark_rows(FEATURE_MODEL, features, "customer_id"),
        _duckdb_rows(warehouse, FEATURE_MODEL, features, "customer_id"),
        features,
    )


@pytest.fixture(scope="module")
def small_splits(spark_settings):
    """Files read in many splits (64 kB each), so a file's rows come from several tasks
    and the row numbers must be put back together in file order."""
    spark = spark_session(spark_settings)
    before = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "65536")
    spark.conf.set("spark.sql.files.openCostInBytes", "0")
    yield
    spark.conf.set("spark.sql.files.maxPartitionBytes", before)
    spark.conf.unset("spark.sql.files.openCostInBytes")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_generated_dirty_data_stages_quarantines_and_featurises_as_on_duckdb(
    tmp_path, spark_settings, small_splits, suffix
):
    # Dirty rows of every kind (duplicates across splits included) over many tasks.
    data = write_customers(tmp_path / f"customers{suffix}", 6_000, seed=11, dirty_fraction=0.08)
    built = _build_both(data, tmp_path, spark_settings)
    spark = spark_session(spark_settings)
    tasks = spark.table("raw.customers").rdd.getNumPartitions()
    assert tasks > 3 if suffix == ".csv" else tasks >= 1
    _assert_parity(built)


def test_hand_written_dirty_rows_and_edge_texts_are_read_as_duckdb_reads_them(
    tmp_path, spark_settings
):
    rows = [(customer_id, overrides) for _case, customer_id, overrides, _reason in CASES]
    data = write_csv(tmp_path / "edge.csv", rows + EDGE_TEXTS)
    built = _build_both(data, tmp_path, spark_settings)
    _assert_parity(built)
    # The texts Spark alone would read differently, checked by name too.
    reasons = dict(
        _spark_rows(QUARANTINE_MODEL, ["customer_id", "rejection_reason"], "customer_id")
    )
    assert reasons["E2"] == "balance: not a number"  # Spark's cast would read 1.5d
    assert reasons["E10"] == "cash_advance_trx: maximum 1e6"  # not "not an integer"
    staged = dict(_spark_rows(STAGED_MODEL, ["customer_id", "balance"], "customer_id"))
    assert staged["E1"] == 1000.0 and staged["E26"] == 1000.0


@pytest.mark.skipif(not REAL_DATA.exists(), reason=f"real data not present at {REAL_DATA}")
def test_real_file_stages_and_featurises_as_on_duckdb(tmp_path, spark_settings):
    built = _build_both(REAL_DATA, tmp_path, spark_settings)
    _assert_parity(built)
    assert _spark_rows(QUARANTINE_MODEL, ["count(*)"], "1") == [(0,)]


def test_the_models_give_the_same_rows_under_ansi_mode(tmp_path, spark_settings):
    """dbt-spark switches ANSI mode off; each model's compiled SELECT, run again with ANSI
    on over the same inputs, gives exactly the rows dbt built."""
    rows = [(customer_id, overrides) for _case, customer_id, overrides, _reason in CASES]
    data = write_csv(tmp_path / "edge.csv", rows + EDGE_TEXTS)
    target = tmp_path / "target"
    settings = dataclasses.replace(spark_settings, data=str(data), dbt_target_path=str(target))
    build_features_on_spark(settings, quiet=True)
    spark = spark_session(settings)
    compiled = target / "compiled" / "segmentation" / "models"
    spark.conf.set("spark.sql.ansi.enabled", "true")
    try:
        for model in ("staging/base_customers", "staging/stg_customers", "marts/customer_features"):
            select = (compiled / f"{model}.sql").read_text()
            again = spark.sql(select)
            built = spark.table(table_name(Path(model).name))
            assert again.schema == built.schema, model
            assert again.exceptAll(built).count() == 0 and built.exceptAll(again).count() == 0
    finally:
        spark.conf.set("spark.sql.ansi.enabled", "false")


def test_a_bad_feature_row_fails_the_rule_it_breaks_on_spark(tmp_path, spark_settings):
    """The column_rules test fails on Spark too, each failure naming its column and rule."""
    from training.features._dbt import dbt_args, invoke
    from training.spark.features import SPARK_TARGET, spark_vars

    data = write_customers(tmp_path / "customers.csv", 300, seed=5)
    settings = dataclasses.replace(spark_settings, data=str(data))
    build_features_on_spark(settings, quiet=True)
    spark = spark_session(settings)
    features, copy = table_name(FEATURE_MODEL), table_name("customer_features_copy")
    spark.sql(f"drop table if exists {copy}")
    spark.sql(f"create table {copy} using parquet as select * from {features}")
    first = spark.sql(f"select min(customer_id) from {copy}").collect()[0][0]
    broken = {"purchases_per_month": "cast(null as double)", "full_payment_share": "7.0"}
    projection = ", ".join(
        f"case when customer_id = '{first}' then {broken[c]} else {c} end as {c}"
        if c in broken
        else c
        for c in spark.table(copy).columns
    )
    spark.sql(f"drop table {features}")
    spark.sql(f"create table {features} using parquet as select {projection} from {copy}")
    outcome = invoke(
        dbt_args(
            "test",
            vars=spark_vars(settings),
            select="customer_features_column_rules",
            target_path=tmp_path / "target",
            log_path=tmp_path / "logs",
            quiet=True,
            target=SPARK_TARGET,
        )
    )
    # The run-start hook (the raw table) is a result too; the test is the other one.
    (result,) = [r for r in outcome.result.results if r.node.resource_type == "test"]
    assert str(result.status) == "fail" and result.failures == 2
    failures = spark.sql(
        "select row_key, column_name, rule from default_dbt_test__audit."
        "customer_features_column_rules order by column_name"
    ).collect()
    assert [tuple(r) for r in failures] == [
        (first, "full_payment_share", "accepted_range"),
        (first, "purchases_per_month", "not_null"),
    ]


def test_the_profile_target_starts_the_session_the_engine_starts(spark_settings):
    """`dbt build --target spark` on its own gets the same configuration as
    `SEGMENTATION_ENGINE=spark` (profiles.yml against spark_conf)."""
    from dbt.config.renderer import ProfileRenderer
    from dbt_common.context import set_invocation_context

    from training.spark.features import spark_vars

    set_invocation_context({})  # env_var() reads it; dbt sets it per invocation

    profile = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    target = profile["segmentation"]["outputs"]["spark"]
    rendered = ProfileRenderer(spark_vars(spark_settings)).render_data(target)
    assert rendered["method"] == "session"
    assert rendered["server_side_parameters"] == spark_conf(spark_settings)


def test_raw_file_columns_are_named_not_positional_on_spark(tmp_path, spark_settings):
    """A file whose columns come in another order stages the same customers (Spark reads
    the header's names, as DuckDB does)."""
    data = write_customers(tmp_path / "customers.csv", 200, seed=8)
    lines = data.read_text().splitlines()
    header = lines[0].split(",")
    order = list(reversed(range(len(header))))
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text(
        "\n".join(",".join(line.split(",")[i] for i in order) for line in lines) + "\n"
    )
    assert shuffled.read_text().splitlines()[0].split(",")[0] == header[-1]
    assert set(header) == {ID_RAW_NAME, *RAW_NAMES}
    built = _build_both(shuffled, tmp_path, spark_settings)
    _assert_parity(built)


def test_the_training_sample_is_seeded_and_stages_on_duckdb_as_spark_staged_it(
    tmp_path, spark_settings
):
    """`segmentation sample`: the same customers for the same seed whatever the row order,
    in the raw layout, staged by DuckDB to exactly Spark's staged values."""
    from training.spark.sample import write_training_sample

    data = write_customers(tmp_path / "customers.csv", 2_000, seed=9)
    lines = data.read_text().splitlines()
    reversed_file = tmp_path / "reversed.csv"
    reversed_file.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    samples = []
    for i, source in enumerate((data, reversed_file)):
        settings = dataclasses.replace(spark_settings, data=str(source), seed=4)
        build_features_on_spark(settings, quiet=True)
        output = tmp_path / f"sample-{i}.parquet"
        assert write_training_sample(settings, output, rows=150) == 150
        samples.append(output)
    ids = [sorted(duckdb.sql(f"select {ID_RAW_NAME} from '{s}'").fetchall()) for s in samples]
    assert ids[0] == ids[1] and len(set(ids[0])) == 150
    other_seed = dataclasses.replace(spark_settings, data=str(data), seed=5)
    build_features_on_spark(other_seed, quiet=True)
    write_training_sample(other_seed, tmp_path / "other.parquet", rows=150)
    assert (
        sorted(duckdb.sql(f"select {ID_RAW_NAME} from '{tmp_path / 'other.parquet'}'").fetchall())
        != ids[0]
    )
    # Spark's staged rows of the sampled customers, then the sample staged on DuckDB.
    spark_staged = [
        row
        for row in _spark_rows(STAGED_MODEL, STAGED_COLUMNS, "customer_id")
        if row[0] in {i for (i,) in ids[0]}
    ]
    assert len(spark_staged) == 150
    duck = Settings(
        data=str(samples[0]),
        warehouse=str(tmp_path / "sample.duckdb"),
        dbt_target_path=str(tmp_path / "t"),
        dbt_log_path=str(tmp_path / "l"),
    )
    build_features(duck, quiet=True)
    _assert_same_rows(
        spark_staged,
        _duckdb_rows(duck.warehouse, STAGED_MODEL, STAGED_COLUMNS, "customer_id"),
        STAGED_COLUMNS,
    )


def test_features_then_score_on_spark_give_duckdbs_segments_for_every_customer(
    tmp_path, spark_settings, trained_model_store, capsys
):
    """End to end on Spark, through the two commands: `segmentation features` (dbt on
    Spark) then `segmentation score` (mapInArrow) give every staged customer the segment
    and distance DuckDB's dbt build and the ONNX graph give it."""
    import argparse

    from training.commands import features as features_command
    from training.commands import score as score_command
    from training.features import build_scores

    data = write_customers(tmp_path / "customers.csv", 4_000, seed=21, dirty_fraction=0.05)
    store = str(trained_model_store.root)
    pointer, _ = trained_model_store.read_pointer()
    spark = dataclasses.replace(spark_settings, data=str(data), model_store=store)
    assert features_command.run(argparse.Namespace(select=None, quiet=True), spark) == 0
    assert score_command.run(argparse.Namespace(quiet=True), spark) == 0
    printed = capsys.readouterr().out
    assert "quarantined: " in printed and f"with model {pointer.version}" in printed
    duck = Settings(
        data=str(data),
        warehouse=str(tmp_path / "warehouse.duckdb"),
        model_store=store,
        dbt_target_path=str(tmp_path / "t"),
        dbt_log_path=str(tmp_path / "l"),
    )
    build_features(duck, quiet=True)
    build_scores(duck, pointer.version, pointer.manifest_sha256, quiet=True)
    columns = ["customer_id", "segment_id", "segment_name", "distance", "model_version"]
    spark_rows = _spark_rows("customer_segments", columns, "customer_id")
    assert len(spark_rows) > 3_500
    _assert_same_rows(
        spark_rows,
        _duckdb_rows(duck.warehouse, "customer_segments", columns, "customer_id"),
        columns,
    )
