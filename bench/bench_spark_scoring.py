"""Time batch scoring on Spark (``scored_frame``) against the in-process ``score_columns``.

Usage::

    .venv/bin/python bench/bench_spark_scoring.py [--rows 1000000] [--repeat 3]
        [--partitions 8] [--batch-rows 10000 32768] [--dir /tmp/bench-spark-scoring]

Setup (not timed), in ``--dir`` (default: ``bench-spark-scoring`` in the system temp
folder), reused across runs: a model trained on 20,000 generated customers into the
folder's store; ``--rows`` generated customers staged by the DuckDB dbt build, exported
by DuckDB to Parquet and saved as the Spark table ``stg_customers`` in ``--partitions``
files (Spark reads a 1M-row table as one or two splits otherwise, and a core idles).

Timed, median of ``--repeat`` after one warm-up run (the Python workers start and build
their onnxruntime session): ``scored_frame`` written with ``format("noop")`` (read,
ship to the Python workers in Arrow batches of each ``--batch-rows``
(``spark.sql.execution.arrow.maxRecordsPerBatch``), score, ship back; nothing written);
the same read and projection without the Python step; and ``score_columns`` in this
process on the same rows as NumPy arrays, on one thread and on one per core. Rates per
core divide by the cores used (the Spark master's ``local[N]``); the machine is shared,
so the 1-minute load average is printed with each figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from segmentation import Settings
from segmentation.batch import load_version, score_columns
from segmentation.store import open_store
from training.data import write_customers
from training.features import build_features
from training.model.params import TrainingParams
from training.spark.scoring import scored_frame
from training.spark.session import spark_session
from training.train import train_and_publish

CORES = 2
MASTER = f"local[{CORES}]"


def _settings(folder: Path, rows: int) -> Settings:
    return Settings(
        home=str(folder),
        data=str(folder / f"customers-{rows}.parquet"),
        warehouse=str(folder / f"warehouse-{rows}.duckdb"),
        model_store=str(folder / "store"),
        engine="spark",
        spark_master=MASTER,
        spark_warehouse=str(folder / "spark-warehouse"),
        dbt_target_path=str(folder / f"target-{rows}"),
        dbt_log_path=str(folder / f"logs-{rows}"),
    )


def setup(folder: Path, rows: int, partitions: int) -> Settings:
    folder.mkdir(parents=True, exist_ok=True)
    trained = _settings(folder, 20_000)
    if not (folder / "store" / "current.json").exists():
        print("setup: train on 20,000 customers", flush=True)
        write_customers(trained.data, 20_000, seed=5)
        train_and_publish(trained, TrainingParams(k=4, seed=5, select=False, stability_boot=5))
    settings = _settings(folder, rows)
    staged = folder / f"staged-{rows}.parquet"
    if not staged.exists():
        print(f"setup: generate and stage {rows:,} customers (DuckDB)", flush=True)
        write_customers(settings.data, rows, seed=rows % 997)
        build_features(settings, quiet=True)
        with duckdb.connect(settings.warehouse) as con:
            con.execute(f"copy stg_customers to '{staged}' (format parquet)")
    spark = spark_session(settings)
    if not spark.catalog.tableExists("stg_customers") or (
        spark.table("stg_customers").count() != rows
    ):
        print(f"setup: save stg_customers to Spark in {partitions} files", flush=True)
        frame = spark.read.parquet(str(staged)).repartition(partitions)
        frame.write.mode("overwrite").saveAsTable("stg_customers")
    return settings


def _median(run: Callable[[], None], repeat: int) -> tuple[float, float]:
    run()  # warm-up
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), os.getloadavg()[0]


def _line(what: str, rows: int, seconds: float, cores: int, load: float) -> None:
    rate = rows / seconds
    print(
        f"{what:<48} {seconds:7.3f} s  {rate / 1e6:6.2f} M rows/s  "
        f"{cores * seconds / rows * 1e9:7.1f} ns/row/core  (load {load:.1f})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--batch-rows", type=int, nargs="+", default=[10_000, 1 << 15])
    parser.add_argument(
        "--dir", type=Path, default=Path(tempfile.gettempdir()) / "bench-spark-scoring"
    )
    args = parser.parse_args()
    settings = setup(args.dir, args.rows, args.partitions)
    spark = spark_session(settings)
    pointer, _ = open_store(settings.model_store).read_pointer()
    bundle = load_version(settings.model_store, pointer.version, pointer.manifest_sha256)
    staged = spark.table("stg_customers")
    names = bundle.scorer.input_names
    print(
        f"{args.rows:,} staged customers, {staged.rdd.getNumPartitions()} partitions, "
        f"{MASTER}, graph {bundle.graph} reads {len(names)} columns"
    )

    for batch_rows in args.batch_rows:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows))
        frame = scored_frame(bundle, staged)
        seconds, load = _median(
            lambda frame=frame: frame.write.format("noop").mode("overwrite").save(), args.repeat
        )
        _line(
            f"Spark scored_frame, Arrow batches of {batch_rows:,}", args.rows, seconds, CORES, load
        )
    spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    projected = staged.selectExpr(
        "cast(customer_id as string)", *(f"cast({n} as double)" for n in names)
    )
    seconds, load = _median(
        lambda: projected.write.format("noop").mode("overwrite").save(), args.repeat
    )
    _line("Spark read and projection only (no Python)", args.rows, seconds, CORES, load)

    with duckdb.connect(settings.warehouse) as con:
        arrow = con.sql(f"select {', '.join(names)} from stg_customers").to_arrow_table()
    columns = {n: arrow.column(n).to_numpy(zero_copy_only=False).astype("float64") for n in names}
    for threads in (1, CORES):
        seconds, load = _median(
            lambda threads=threads: score_columns(bundle, columns, threads=threads), args.repeat
        )
        _line(f"in-process score_columns, {threads} thread(s)", args.rows, seconds, threads, load)


if __name__ == "__main__":
    main()
