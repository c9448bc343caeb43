"""Benchmark the sample-data generator: rows/s generating, writing CSV, writing Parquet.

Usage::

    .venv/bin/python bench/bench_generator.py [--sizes 100000,1000000,10000000] [--repeat 3]

Each case runs in a fresh subprocess so its peak RSS (``resource.getrusage``) is its own.
Prints the median wall time over ``--repeat`` runs (one run at 10M rows), the process CPU
time (user + system, all threads: on a shared machine the better measure of cost) and
rows per second of wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("generate", "csv", "parquet")


def run_case(mode: str, n_rows: int, directory: str) -> dict:
    """One measurement, in this process."""
    sys.path.insert(0, str(ROOT))
    from training.data import write_customers
    from training.data._writer import iter_tables

    started, cpu = time.perf_counter(), time.process_time()
    size = 0
    if mode == "generate":
        for _ in iter_tables(n_rows, 42, 0.0, text=False):
            pass
    else:
        path = write_customers(Path(directory) / f"customers.{mode}", n_rows, seed=42)
        size = path.stat().st_size
        path.unlink()
    return {
        "wall": time.perf_counter() - started,
        "cpu": time.process_time() - cpu,
        "bytes": size,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(mode: str, n_rows: int, directory: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--case", mode, str(n_rows), directory],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        mode, n_rows, directory = args.case
        print(json.dumps(run_case(mode, int(n_rows), directory)))
        return 0
    print(f"generator benchmark: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(
        f"{'mode':9} {'rows':>11} {'wall s':>8} {'cpu s':>7} {'rows/s':>12} "
        f"{'cpu-rows/s':>11} {'MB':>7} {'peak RSS MB':>11}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-generator-") as directory:
        for n_rows in (int(s) for s in args.sizes.split(",")):
            for mode in MODES:
                repeat = 1 if n_rows >= 10_000_000 else args.repeat
                runs = [measure(mode, n_rows, directory) for _ in range(repeat)]
                wall = statistics.median(r["wall"] for r in runs)
                cpu = statistics.median(r["cpu"] for r in runs)
                print(
                    f"{mode:9} {n_rows:>11,} {wall:>8.2f} {cpu:>7.2f} {n_rows / wall:>12,.0f} "
                    f"{n_rows / cpu:>11,.0f} {runs[0]['bytes'] / 1e6:>7.1f} "
                    f"{max(r['peak_rss_mb'] for r in runs):>11.0f}",
                    flush=True,
                )
    print("rows/s = rows / median wall time; cpu-rows/s = rows / CPU seconds of all threads")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
