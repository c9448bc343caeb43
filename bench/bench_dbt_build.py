"""Benchmark `dbt build` of the feature layer on generated customers.

Usage::

    .venv/bin/python bench/bench_dbt_build.py [--sizes 100000,1000000,10000000]
        [--formats csv,parquet] [--repeat 1] [--all-models] [--data-dir DIR]
        [--baseline-ref GIT_REF]

For each size and format the generator writes the file (not timed; seed 42): into a
temporary folder under /tmp, or with ``--data-dir`` into that folder, where a file
already written for the same size, format and seed is reused (never the repository:
the 10M Parquet file is 430 MB, the CSV 1 GB). Each build runs in a fresh subprocess, so
its peak RSS (``resource.getrusage``) is its own: DuckDB runs in-process under dbt. By
default the build selects the feature layer (staging, quarantine, customer_features and
their tests: what `segmentation features` runs, through the same ``build_features``;
``training.features.FEATURE_SELECTION``); ``--all-models`` builds every enabled model
(batch scoring is enabled only for a named model version, so it is not part of this
benchmark).

``--baseline-ref`` also builds the dbt project as it was at that git commit (read with
``git archive``, nothing in the working tree changes), in the same run and on the same
files, alternating with the current project, so that before and after meet the same load.

Prints, per project, size and format: the median wall seconds of the dbt invocation
over ``--repeat`` runs (import of dbt, a full parse and start-up included), seconds per
million rows, the child's CPU seconds (user + system, all threads: steadier than wall
time on a shared machine), peak RSS, the number of model and test nodes dbt ran, and
whether staging numbered the rows in file order; then the slowest nodes of the last run
(dbt's own execution times) and the 1-minute load average before the runs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from training.features import FEATURE_SELECTION

ROOT = Path(__file__).resolve().parents[1]
FEATURE_LAYER = FEATURE_SELECTION
SEED = 42
#: Slowest nodes listed after each row of figures.
SLOWEST = 5


def _build(data: str, work: Path, select: str | None, project: str | None) -> float:
    """Run the build; return dbt's seconds. ``project``: another dbt project folder."""
    from segmentation import Settings
    from training.features import build_features
    from training.features._dbt import DBT_PROJECT_DIR, dbt_args, run_build

    settings = Settings(
        data=data, warehouse=str(work / "warehouse.duckdb"), model_store=str(work / "store")
    )
    paths = {"target_path": work / "target", "log_path": work / "logs"}
    if project is None:
        return build_features(settings, select=select, quiet=True, **paths).seconds
    # The same invocation as build_features, pointed at the other project.
    args = dbt_args(
        "build",
        vars={"segmentation_data": data, "segmentation_warehouse": settings.warehouse},
        select=select,
        quiet=True,
        **paths,
    )
    args = [project if arg == str(DBT_PROJECT_DIR) else arg for arg in args]
    seconds, _ = run_build(args)
    return seconds


def run_child(data: str, directory: str, select: str | None, project: str | None) -> dict:
    """One build, in this process; returns its measurements."""
    sys.path.insert(0, str(ROOT))
    import duckdb

    work = Path(directory)
    seconds = _build(data, work, select, project)
    con = duckdb.connect(str(work / "warehouse.duckdb"))
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
    [(staged,)] = con.execute("select count(*) from stg_customers").fetchall()
    con.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results = json.loads((work / "target" / "run_results.json").read_text())["results"]
    kinds = [r["unique_id"].split(".")[0] for r in results]
    nodes = sorted(results, key=lambda r: -r["execution_time"])[:SLOWEST]
    return {
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "staged": staged,
        "models": kinds.count("model"),
        "tests": kinds.count("test"),
        "slowest": [(r["unique_id"].split(".")[2], r["execution_time"]) for r in nodes],
        "order_kept": out_of_order == 0,
    }


def measure(data: Path, select: str | None, project: Path | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-dbt-") as work:
        command = [sys.executable, __file__, "--child", str(data), work]
        if select:
            command += ["--select", select]
        if project:
            command += ["--project", str(project)]
        done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
        return json.loads(done.stdout.strip().splitlines()[-1])


def checkout_project(ref: str, into: Path) -> Path:
    """The dbt project at git commit ``ref``, extracted under ``into`` (read-only git)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "dbt_project"],
        check=True,
        capture_output=True,
        cwd=ROOT,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "dbt_project"


def data_file(folder: Path, n_rows: int, fmt: str) -> Path:
    from training.data import write_customers

    path = folder / f"customers-{n_rows}-seed{SEED}.{fmt}"
    if not path.exists():  # written to a temporary name and renamed: never half a file
        write_customers(path, n_rows, seed=SEED)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--all-models", action="store_true")
    parser.add_argument("--data-dir", type=Path, help="keep and reuse the generated files here")
    parser.add_argument("--baseline-ref", help="also build the dbt project of this git commit")
    parser.add_argument("--child", nargs=2, metavar=("DATA", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--select", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--project", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(*args.child, args.select, args.project)))
        return 0

    sys.path.insert(0, str(ROOT))
    select = None if args.all_models else FEATURE_LAYER
    with tempfile.TemporaryDirectory(prefix="bench-data-") as scratch:
        projects: dict[str, Path | None] = {"current": None}
        if args.baseline_ref:
            projects[args.baseline_ref] = checkout_project(args.baseline_ref, Path(scratch))
        folder = args.data_dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        print(
            f"dbt build ({'all models' if args.all_models else 'feature layer'}), "
            f"median of {args.repeat}; load average {os.getloadavg()[0]:.1f}"
        )
        header = f"{'project':>10} {'rows':>11} {'format':>8} {'file MB':>8} {'seconds':>8} "
        print(
            header + f"{'s/1M rows':>10} {'CPU s':>7} {'peak RSS MB':>12} {'models':>7} "
            f"{'tests':>6} {'staged':>11} {'order kept':>10}"
        )
        for n_rows in (int(s) for s in args.sizes.split(",")):
            for fmt in args.formats.split(","):
                data = data_file(folder, n_rows, fmt)
                runs: dict[str, list[dict]] = {name: [] for name in projects}
                for _ in range(args.repeat):  # alternate: both meet the same load
                    for name, project in projects.items():
                        runs[name].append(measure(data, select, project))
                for name, done in runs.items():
                    print_row(name, n_rows, fmt, data, done)
    return 0


def print_row(name: str, n_rows: int, fmt: str, data: Path, runs: list[dict]) -> None:
    seconds = statistics.median(r["seconds"] for r in runs)
    cpu = statistics.median(r["cpu_seconds"] for r in runs)
    rss = max(r["peak_rss_mb"] for r in runs)
    last = runs[-1]
    print(
        f"{name[:10]:>10} {n_rows:>11,} {fmt:>8} {data.stat().st_size / 1e6:>8.0f} "
        f"{seconds:>8.2f} {seconds / n_rows * 1e6:>10.2f} {cpu:>7.1f} {rss:>12.0f} "
        f"{last['models']:>7} {last['tests']:>6} {last['staged']:>11,} "
        f"{'yes' if last['order_kept'] else 'NO':>10}",
        flush=True,
    )
    runs_text = ", ".join(f"{r['seconds']:.1f}" for r in runs)
    slowest = ", ".join(f"{node} {s:.1f}" for node, s in last["slowest"])
    print(f"{'':>10}   runs: {runs_text} s; slowest nodes (last run): {slowest}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
