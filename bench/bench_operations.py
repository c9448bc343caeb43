"""Time the operations loop: a drift check on 10M customers, a scheduled retrain on 1M.

Usage::

    .venv/bin/python bench/bench_operations.py [--drift-rows 10000000]
        [--retrain-rows 1000000] [--repeat 3]

Setup (not timed): a first model trained on 20,000 generated customers; the generator
writes the drift and retrain files (Parquet) and ``dbt build`` stages the drift file into
a warehouse. Timed:

- ``segmentation drift`` on the warehouse (``training.monitoring.check.check_drift``,
  not recorded): one DuckDB scan for the 24 feature histograms, the staged rows streamed
  through the graph for segment shares, atypical share and distances. Target: <= 10 s for
  10M customers x 24 features, bounded memory (peak RSS printed, measured in a fresh
  child process per run).
- ``segmentation retrain --force`` on the retrain file (``run_retrain``) into a copy of
  the store: dbt build into a fresh DuckDB file, drift, training with the default
  selection, gates, publish, promote. Target: <= 60 s end to end for 1M customers.

Prints medians over ``--repeat`` runs and each run's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _settings(work: Path, data: Path, store: Path):
    from segmentation import Settings

    return Settings(
        data=str(data),
        warehouse=str(work / "warehouse.duckdb"),
        model_store=str(store),
        dbt_target_path=str(work / "target"),
        dbt_log_path=str(work / "logs"),
    )


def child(kind: str, work: str, data: str, store: str) -> dict:
    """One timed run in this (fresh) process: its seconds and peak RSS."""
    sys.path.insert(0, str(ROOT))
    settings = _settings(Path(work), Path(data), Path(store))
    started = time.perf_counter()
    if kind == "drift":
        from training.monitoring.check import check_drift

        check = check_drift(settings, record=False)
        detail = {"rows": check.result.rows, "level": check.result.raw_level}
    else:
        from training.retrain import run_retrain
        from training.retrain.trigger import from_cli

        summary = run_retrain(from_cli(None, force=True), settings)
        detail = {"outcome": summary.outcome, "stages": summary.stages}
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_rss_mb": peak_mb, **detail}


def _run_child(kind: str, work: Path, data: Path, store: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(work), str(data), str(store)],
        capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drift-rows", type=int, default=10_000_000)
    parser.add_argument("--retrain-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child), default=str))
        return 0
    sys.path.insert(0, str(ROOT))
    from training.data import write_customers
    from training.model.params import TrainingParams
    from training.train import train_and_publish

    with tempfile.TemporaryDirectory(prefix="bench-operations-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        write_customers(root / "first.parquet", 20_000, seed=1)
        first = _settings(root / "first", root / "first.parquet", root / "store")
        train_and_publish(first, TrainingParams(seed=3))
        write_customers(root / "drift.parquet", args.drift_rows, seed=2)
        (root / "drift").mkdir()
        # In a child: DuckDB keeps the file locked by the process that built it.
        env = {
            **os.environ,
            "SEGMENTATION_DATA": str(root / "drift.parquet"),
            "SEGMENTATION_WAREHOUSE": str(root / "drift" / "warehouse.duckdb"),
            "DBT_TARGET_PATH": str(root / "drift" / "target"),
            "DBT_LOG_PATH": str(root / "drift" / "logs"),
        }
        command = [sys.executable, "-m", "training.cli", "features", "--quiet"]
        subprocess.run(command, env=env, check=True, capture_output=True)
        write_customers(root / "retrain.parquet", args.retrain_rows, seed=3)
        print(f"# setup (not timed): {time.perf_counter() - t:.0f} s")
        drift = [
            _run_child("drift", root / "drift", root / "drift.parquet", root / "store")
            for _ in range(args.repeat)
        ]
        for run in drift:
            print(f"drift run: {run}")
        retrain = []
        for i in range(args.repeat):
            store = root / f"retrain-store-{i}"
            shutil.copytree(root / "store", store)
            retrain.append(_run_child("retrain", root / "first", root / "retrain.parquet", store))
            print(f"retrain run: {retrain[-1]}")
    print("\n| what | rows | median seconds | peak RSS MB |\n|---|---|---|---|")
    table = (
        ("drift check", drift, args.drift_rows),
        ("scheduled retrain (forced)", retrain, args.retrain_rows),
    )
    for name, runs, rows in table:
        seconds = statistics.median(r["seconds"] for r in runs)
        rss = max(r["peak_rss_mb"] for r in runs)
        print(f"| {name} | {rows:,} | {seconds:.1f} | {rss:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
