"""Benchmark Spark local[2] against DuckDB on one machine: the feature layer and scoring.

Usage::

    .venv/bin/python bench/bench_spark.py [--sizes 1000000,10000000] [--format parquet]
        [--data-dir DIR] [--model-store STORE]

For each size the generator writes the raw file (not timed; seed 42; reused from
``--data-dir`` when already there). Each engine runs in a fresh subprocess:

- DuckDB: ``training.features.build_features`` (what ``segmentation features`` runs), then,
  with a current model in ``--model-store``, ``training.features.build_scores``.
- Spark: the session's start (JVM, Hive catalog), a build of a 1,000-row file (the fixed
  cost of a dbt run on Spark: parse, the raw table, one job per model and test), the
  build of the file itself, then scoring (``training.spark.build.build_scores_spark``).

Prints wall seconds per step, dbt's own seconds per node for the slowest nodes, the
rows per second of the variable part, and the 1-minute load average before each run.
Without ``--model-store`` (or with an empty one) a model is trained on 20,000 generated
customers first (not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = 42
SLOWEST = 6


def _settings(work: Path, data: Path, store: str, **extra):
    from segmentation import Settings

    return Settings(
        home=str(work),
        data=str(data),
        warehouse=str(work / "warehouse.duckdb"),
        model_store=store,
        spark_warehouse=str(work / "spark-warehouse"),
        dbt_target_path=str(work / "target"),
        dbt_log_path=str(work / "logs"),
        **extra,
    )


def _slowest_nodes(work: Path) -> list[tuple[str, float]]:
    results = json.loads((work / "target" / "run_results.json").read_text())["results"]
    timed = [(r["unique_id"].split(".")[2], float(r["execution_time"])) for r in results]
    return sorted(timed, key=lambda t: -t[1])[:SLOWEST]


def _seconds(step) -> float:
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def child(engine: str, data: Path, work: Path, store: str, small: Path) -> dict:
    """One engine's steps in this process; the figures as a dict."""
    from segmentation.store import open_store

    out: dict = {"engine": engine}
    pointer, _ = open_store(store).read_pointer()
    if engine == "duckdb":
        from training.features import build_features

        settings = _settings(work, data, store)

        def score():
            from training.features import build_scores

            build_scores(settings, pointer.version, pointer.manifest_sha256, quiet=True)
    else:
        from training.spark.build import build_scores_spark
        from training.spark.features import build_features
        from training.spark.session import spark_session

        settings = _settings(work, data, store, engine="spark")
        out["session_s"] = _seconds(lambda: spark_session(settings))
        small_settings = _settings(work, small, store, engine="spark")
        out["features_1k_s"] = _seconds(lambda: build_features(small_settings, quiet=True))

        def score():
            build_scores_spark(settings, pointer.version, pointer.manifest_sha256)

    out["features_s"] = _seconds(lambda: build_features(settings, quiet=True))
    out["features_nodes"] = _slowest_nodes(work)
    if pointer is not None:
        out["score_s"] = _seconds(score)
    return out


def _trained_store(work: Path) -> str:
    from segmentation import Settings
    from training.data import write_customers
    from training.model.params import TrainingParams
    from training.train import train_and_publish

    data = write_customers(work / "train.csv", 20_000, seed=SEED)
    settings = Settings(
        data=str(data),
        warehouse=str(work / "train.duckdb"),
        model_store=str(work / "store"),
        dbt_target_path=str(work / "train-target"),
        dbt_log_path=str(work / "train-logs"),
    )
    train_and_publish(settings, TrainingParams(k=4, seed=SEED, select=False))
    return settings.model_store


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--format", default="parquet", choices=("parquet", "csv"))
    ap.add_argument("--data-dir", type=Path)
    ap.add_argument("--model-store", default="")
    ap.add_argument("--child", nargs=5, metavar=("ENGINE", "DATA", "WORK", "STORE", "SMALL"))
    args = ap.parse_args()
    if args.child:
        engine, data, work, store, small = args.child
        print(json.dumps(child(engine, Path(data), Path(work), store, Path(small))))
        return 0

    from segmentation.store import open_store
    from training.data import write_customers

    scratch = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    data_dir = args.data_dir or scratch
    store = args.model_store
    if not store or open_store(store).read_pointer()[0] is None:
        store = _trained_store(scratch)
    small = write_customers(scratch / f"small.{args.format}", 1_000, seed=SEED)
    for size in (int(s) for s in args.sizes.split(",")):
        data = data_dir / f"customers-{size}-{SEED}.{args.format}"
        if not data.exists():
            write_customers(data, size, seed=SEED)
        for engine in ("duckdb", "spark"):
            work = scratch / f"{engine}-{size}"
            work.mkdir()
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    engine,
                    str(data),
                    str(work),
                    store,
                    str(small),
                ],
                capture_output=True,
                text=True,
                check=False,
                cwd=ROOT,
            )
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            figures["process_s"] = time.perf_counter() - t0
            figures["load_before"] = load
            figures["rows"] = size
            print(json.dumps(figures))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
