"""Batch scoring on Spark (``SEGMENTATION_ENGINE=spark``): DuckDB's customer_segments, bit
for bit, from a bundle verified once on the driver and one onnxruntime session per worker.

Without dbt-on-Spark the Spark table ``stg_customers`` is DuckDB's, copied: dbt builds a
DuckDB warehouse from the customers (generated, with credit limits and minimum payments
blanked in some rows; or the real file), DuckDB's own ``customer_segments`` is the oracle
next to ``score_columns`` run here, and each data set lives in a Spark database of its own,
the session's current database only while a test uses it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import REAL_DATA
from pyspark.sql import functions as F

from segmentation import FeatureBuildError, ModelContractError, Settings
from segmentation.batch import load_version, score_columns
from segmentation.bundle import load_bundle
from segmentation.store import LocalStore, version_key
from training.commands import score as score_command
from training.data import generate_customers
from training.features import build_features, build_scores
from training.model.params import TrainingParams
from training.spark import scoring
from training.spark.build import build_scores_spark
from training.spark.scoring import ShippedBundle, scored_frame
from training.spark.session import spark_session
from training.train import train_and_publish

pytestmark = pytest.mark.slow

#: Spark's names of DuckDB's column types.
DUCKDB_TYPES = {"string": "VARCHAR", "bigint": "BIGINT", "double": "DOUBLE"}


@dataclass(frozen=True)
class Workspace:
    """One data set scored both ways with the trained store's current version."""

    settings: Settings  # engine spark; the DuckDB warehouse; the trained store
    database: str  # the Spark database holding its stg_customers and customer_segments
    staged: pa.Table  # DuckDB's stg_customers, as copied to Spark
    version: str
    manifest_sha256: str


@contextlib.contextmanager
def using(settings: Settings, database: str):
    """The Spark session with ``database`` current (created if absent), restored after."""
    spark = spark_session(settings)
    before = spark.catalog.currentDatabase()
    spark.sql(f"create database if not exists {database}")
    spark.catalog.setCurrentDatabase(database)
    try:
        yield spark
    finally:
        spark.catalog.setCurrentDatabase(before)


def _workspace(root: Path, database: str, data: Path, spark_settings, store) -> Workspace:
    settings = replace(
        spark_settings,
        data=str(data),
        warehouse=str(root / "warehouse.duckdb"),
        model_store=str(store.root),
        dbt_target_path=str(root / "target"),
        dbt_log_path=str(root / "logs"),
    )
    pointer, _ = store.read_pointer()
    build_features(settings, quiet=True)
    build_scores(settings, pointer.version, pointer.manifest_sha256, quiet=True)
    staged = _duckdb(settings, "select * from stg_customers").sort_by("customer_id")
    with using(settings, database) as spark:
        spark.createDataFrame(staged).write.mode("overwrite").saveAsTable("stg_customers")
        build_scores_spark(settings, pointer.version, pointer.manifest_sha256)
    return Workspace(settings, database, staged, pointer.version, pointer.manifest_sha256)


def _duckdb(settings: Settings, sql: str) -> pa.Table:
    # Default configuration: dbt-duckdb ran in this process and keeps the file open.
    with duckdb.connect(settings.warehouse) as con:
        return con.sql(sql).to_arrow_table()


def _spark_segments(ws: Workspace) -> pa.Table:
    with using(ws.settings, ws.database) as spark:
        return spark.table("customer_segments").toArrow().sort_by("customer_id")


def _duckdb_segments(ws: Workspace) -> pa.Table:
    return _duckdb(ws.settings, "select * from customer_segments order by customer_id")


def _customers_with_blanks(path: Path) -> Path:
    """3,000 generated customers, credit limit blank in every 50th row and minimum
    payments in every 40th (the generator blanks a few more of its own)."""
    raw = generate_customers(3_000, seed=17)
    rows = np.arange(raw.num_rows)
    for column, every in (("CREDIT_LIMIT", 50), ("MINIMUM_PAYMENTS", 40)):
        values = raw.column(column)
        blanked = pc.if_else(pa.array(rows % every == 0), pa.nulls(len(rows), values.type), values)
        raw = raw.set_column(raw.schema.get_field_index(column), column, blanked)
    pq.write_table(raw, path)
    return path


@pytest.fixture(scope="module")
def generated(tmp_path_factory, spark_settings, trained_model_store) -> Workspace:
    root = tmp_path_factory.mktemp("spark-scoring")
    data = _customers_with_blanks(root / "customers.parquet")
    return _workspace(root, "scoring_generated", data, spark_settings, trained_model_store)


@pytest.fixture(scope="module")
def imputed(tmp_path_factory, spark_settings) -> Workspace:
    """The generated customers scored by a model clustering on every feature, so that its
    scoring graph reads (and imputes) credit_limit and minimum_payments: the trained
    store's clusters on behaviour features that read neither."""
    root = tmp_path_factory.mktemp("spark-scoring-imputed")
    settings = replace(
        spark_settings,
        data=str(_customers_with_blanks(root / "customers.parquet")),
        warehouse=str(root / "train.duckdb"),
        model_store=str(root / "store"),
        dbt_target_path=str(root / "target"),
        dbt_log_path=str(root / "logs"),
    )
    params = TrainingParams(k=4, seed=3, select=False, stability_boot=5, cluster_features=None)
    train_and_publish(settings, params)
    store = LocalStore(root / "store")
    return _workspace(root, "scoring_imputed", Path(settings.data), spark_settings, store)


@pytest.fixture(scope="module")
def real(tmp_path_factory, spark_settings, trained_model_store) -> Workspace:
    if not REAL_DATA.exists():
        pytest.skip(f"the real file {REAL_DATA} is not on this machine")
    root = tmp_path_factory.mktemp("spark-scoring-real")
    return _workspace(root, "scoring_real", REAL_DATA, spark_settings, trained_model_store)


@pytest.mark.parametrize("data", ["generated", "real"])
def test_spark_scores_every_row_as_score_columns_and_duckdb_do(data, request):
    ws: Workspace = request.getfixturevalue(data)
    spark_rows = _spark_segments(ws)
    bundle = load_bundle(
        LocalStore(ws.settings.model_store), LocalStore(ws.settings.model_store).read_pointer()[0]
    )
    in_process = score_columns(
        bundle,
        {n: ws.staged.column(n).to_numpy(zero_copy_only=False) for n in bundle.scorer.input_names},
    )
    assert spark_rows.num_rows == ws.staged.num_rows > 0
    assert spark_rows.column("customer_id").equals(ws.staged.column("customer_id"))
    assert np.array_equal(spark_rows.column("segment_id").to_numpy(), in_process.segment_id)
    # Bit for bit, not within a tolerance: the same graph on the same float64 inputs.
    assert np.array_equal(spark_rows.column("distance").to_numpy(), in_process.distance)
    assert len(set(in_process.segment_id.tolist())) > 1
    assert spark_rows.equals(_duckdb_segments(ws))


def test_spark_table_has_the_columns_and_types_of_duckdbs(generated):
    duck = _duckdb(
        generated.settings,
        "select column_name, data_type from information_schema.columns "
        "where table_name = 'customer_segments' order by ordinal_position",
    )
    with using(generated.settings, generated.database) as spark:
        schema = spark.table("customer_segments").schema
        described = {
            r.col_name: r.data_type
            for r in spark.sql("describe table extended customer_segments").collect()
        }
    spark_columns = [(f.name, DUCKDB_TYPES.get(f.dataType.simpleString())) for f in schema]
    assert spark_columns == list(zip(*duck.to_pydict().values(), strict=True))
    assert (described["Type"], described["Provider"]) == ("MANAGED", "parquet")


def test_null_credit_limit_and_minimum_payments_score_as_duckdb_scores_them(imputed):
    staged = imputed.staged
    bundle = load_version(imputed.settings.model_store, imputed.version)
    nullable = {"credit_limit", "minimum_payments"}
    assert nullable <= set(bundle.scorer.input_names)  # else the nulls would not matter
    for column in nullable:
        assert staged.column(column).null_count >= 20
    has_null = pc.or_(*(pc.is_null(staged.column(c)) for c in nullable))
    ids = staged.filter(has_null).column("customer_id")
    spark_rows = _spark_segments(imputed).filter(pc.field("customer_id").isin(ids))
    duck_rows = _duckdb_segments(imputed).filter(pc.field("customer_id").isin(ids))
    assert spark_rows.num_rows == len(ids)
    assert np.isfinite(spark_rows.column("distance").to_numpy()).all()
    assert spark_rows.equals(duck_rows)


def _first_rows(spark, rows: int, partitions: int):
    return spark.table("stg_customers").orderBy("customer_id").limit(rows).repartition(partitions)


def _no_rows_in_partitions(spark, rows: int, partitions: int):
    # Filtered on a value, so the partitions stay (an empty limit plans none at all).
    staged = spark.table("stg_customers").repartition(partitions)
    return staged.where(F.col("customer_id") == "no such customer")


@pytest.mark.parametrize(
    ("rows", "partitions", "frame", "planned"),
    [
        (5, 16, _first_rows, 16),
        (1, 3, _first_rows, 3),
        (0, 4, _first_rows, 0),  # Spark plans an empty relation without partitions
        (0, 4, _no_rows_in_partitions, 4),
    ],
)
def test_more_partitions_than_rows_and_no_rows_score(generated, rows, partitions, frame, planned):
    bundle = load_version(generated.settings.model_store, generated.version)
    with using(generated.settings, generated.database) as spark:
        scored = scored_frame(bundle, frame(spark, rows, partitions))
        assert scored.rdd.getNumPartitions() == planned
        got = scored.toArrow().sort_by("customer_id")
    want = _duckdb_segments(generated).slice(0, rows)
    assert got.num_rows == rows
    assert got.equals(want)


def test_an_empty_stg_customers_gives_an_empty_customer_segments(generated):
    with using(generated.settings, "scoring_empty") as spark:
        spark.createDataFrame(generated.staged.slice(0, 0)).write.mode("overwrite").saveAsTable(
            "stg_customers"
        )
        result = build_scores_spark(
            generated.settings, generated.version, generated.manifest_sha256
        )
        written = spark.table("customer_segments").count()
    assert (result.customers, result.segments, written) == (0, (), 0)


def test_no_stg_customers_names_the_table_and_the_command(generated):
    with using(generated.settings, "scoring_missing"), pytest.raises(FeatureBuildError) as caught:
        build_scores_spark(generated.settings, generated.version, generated.manifest_sha256)
    assert "stg_customers" in str(caught.value)
    assert "segmentation features" in str(caught.value)


def _table_files(spark) -> list[tuple[str, int, int]]:
    described = spark.sql("describe table extended customer_segments").collect()
    location = next(r.data_type for r in described if r.col_name == "Location")
    folder = Path(location.removeprefix("file:"))
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir())


@pytest.mark.parametrize("tampered", ["manifest.json", "graph"])
def test_a_tampered_bundle_fails_before_any_spark_job_and_keeps_the_table(
    generated, tampered, tmp_path
):
    shutil.copytree(generated.settings.model_store, tmp_path / "store")
    store = LocalStore(tmp_path / "store")
    name = (
        load_version(str(store.root), generated.version).graph
        if tampered == "graph"
        else (tampered)
    )
    path = store.root / version_key(generated.version, name)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    settings = replace(generated.settings, model_store=str(store.root))
    with using(generated.settings, generated.database) as spark:
        rows_before, files_before = _spark_segments(generated), _table_files(spark)
        group = f"tampered-{tampered}"
        spark.sparkContext.setJobGroup(group, "scoring with a tampered bundle")
        try:
            with pytest.raises(ModelContractError, match=rf"^{re.escape(name)}: sha256 differs"):
                build_scores_spark(settings, generated.version, generated.manifest_sha256)
            jobs = spark.sparkContext.statusTracker().getJobIdsForGroup(group)
        finally:
            spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
        files_after = _table_files(spark)
    assert jobs == []
    assert files_after == files_before
    assert _spark_segments(generated).equals(rows_before)


def test_each_python_worker_builds_one_onnxruntime_session(generated):
    """Every task reports its worker's pid and the sessions that process has built for
    the graph (the module's ``sessions_built`` hook), over two jobs of 24 tasks."""
    shipped = ShippedBundle.of(load_version(generated.settings.model_store, generated.version))

    def probe(batches):  # local, so pickled by value; runs the production worker function
        rows = sum(batch.num_rows for batch in scoring.score_partition(shipped, batches))
        yield pa.RecordBatch.from_pydict(
            {
                "pid": [os.getpid()],
                "sessions": [scoring.sessions_built[shipped.graph_sha256]],
                "rows": [rows],
            }
        )

    with using(generated.settings, generated.database) as spark:
        staged = spark.table("stg_customers").repartition(24)
        jobs = [
            staged.mapInArrow(probe, "pid long, sessions long, rows long").collect()
            for _ in range(2)
        ]
    tasks = [task for job in jobs for task in job]
    assert [sum(t.rows for t in job) for job in jobs] == [generated.staged.num_rows] * 2
    assert {t.sessions for t in tasks} == {1}
    assert len({t.pid for t in tasks}) < len(tasks) / 4  # the workers were reused


def test_score_command_prints_the_duckdb_lines_with_engine_spark(generated, capsys):
    args = argparse.Namespace(quiet=True)
    settings = generated.settings
    assert score_command.run(args, replace(settings, engine="duckdb")) == 0
    duckdb_lines = capsys.readouterr().out
    with using(generated.settings, generated.database):
        assert score_command.run(args, settings) == 0
    spark_lines = capsys.readouterr().out
    assert spark_lines.startswith(
        f"scored {generated.staged.num_rows} customers with model {generated.version} "
        f"into {settings.spark_warehouse}\n"
    )
    assert spark_lines == duckdb_lines.replace(settings.warehouse, settings.spark_warehouse)
