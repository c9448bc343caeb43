"""Benchmark `dbt build` of the feature layer on generated customers.

Usage::

    .venv/bin/python bench/bench_dbt_build.py [--sizes 100000,1000000,10000000]
        [--formats csv,parquet] [--repeat 1] [--all-models]

For each size and format the generator writes the file (not timed), then each build runs
in a fresh subprocess so its peak RSS (``resource.getrusage``) is its own: DuckDB runs
in-process under dbt. By default the build selects the feature layer (staging,
quarantine, customer_features and their tests, which is what `segmentation features`
needs before training; ``training.features.FEATURE_SELECTION``); ``--all-models`` builds
every enabled model (batch scoring is enabled only for a named model version, so it is
not part of this benchmark).
Prints the median wall seconds over ``--repeat`` runs (parse and start-up included),
seconds per million rows (flat means linear growth), the child's CPU seconds (user +
system, all threads: steadier than wall time on a shared machine), peak RSS, and
whether staging numbered the rows in file order.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from training.features import FEATURE_SELECTION

ROOT = Path(__file__).resolve().parents[1]
FEATURE_LAYER = FEATURE_SELECTION


def run_child(data: str, directory: str, select: str | None) -> dict:
    """One build, in this process; returns its measurements."""
    sys.path.insert(0, str(ROOT))
    import duckdb

    from segmentation import Settings
    from training.features import build_features

    work = Path(directory)
    settings = Settings(
        data=data, warehouse=str(work / "warehouse.duckdb"), model_store=str(work / "store")
    )
    result = build_features(
        settings,
        select=select,
        target_path=work / "target",
        log_path=work / "logs",
        quiet=True,
    )
    con = duckdb.connect(settings.warehouse)
    # Generated ids are C10001, C10002, ... in file order: staging must keep that order.
    [(out_of_order,)] = con.execute(
        """
        select count(*) from (
            select cast(customer_id[2:] as bigint) - lag(cast(customer_id[2:] as bigint))
                over (order by source_row_number) as step
            from base_customers
        ) where step <> 1
        """
    ).fetchall()
    con.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": result.seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "staged": result.staged_rows,
        "quarantined": result.quarantined_rows,
        "features": result.feature_rows,
        "order_kept": out_of_order == 0,
    }


def measure(data: Path, select: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-dbt-") as work:
        command = [sys.executable, __file__, "--child", str(data), work]
        if select:
            command += ["--select", select]
        done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
        return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--all-models", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("DATA", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--select", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(*args.child, args.select)))
        return 0

    sys.path.insert(0, str(ROOT))
    from training.data import write_customers

    select = None if args.all_models else FEATURE_LAYER
    print(
        f"dbt build ({'all models' if args.all_models else 'feature layer'}), "
        f"median of {args.repeat}"
    )
    header = f"{'rows':>11} {'format':>8} {'file MB':>8} {'seconds':>8} {'s/1M rows':>10} "
    print(header + f"{'CPU s':>7} {'peak RSS MB':>12} {'staged':>11} {'order kept':>10}")
    for n_rows in (int(s) for s in args.sizes.split(",")):
        for fmt in args.formats.split(","):
            with tempfile.TemporaryDirectory(prefix="bench-data-") as data_dir:
                data = write_customers(Path(data_dir) / f"customers.{fmt}", n_rows, seed=42)
                runs = [measure(data, select) for _ in range(args.repeat)]
                seconds = statistics.median(r["seconds"] for r in runs)
                cpu = statistics.median(r["cpu_seconds"] for r in runs)
                rss = max(r["peak_rss_mb"] for r in runs)
                print(
                    f"{n_rows:>11,} {fmt:>8} {data.stat().st_size / 1e6:>8.0f} "
                    f"{seconds:>8.2f} {seconds / n_rows * 1e6:>10.2f} {cpu:>7.1f} {rss:>12.0f} "
                    f"{runs[0]['staged']:>11,} {'yes' if runs[0]['order_kept'] else 'NO':>10}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
