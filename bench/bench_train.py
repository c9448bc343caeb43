"""Time `segmentation train` on generated customers, with its peak memory, stage by stage.

Usage::

    .venv/bin/python bench/bench_train.py [--rows 10000000 50000000] [--repeat 1]
        [--dir /tmp/bench-train] [--no-select] [--regenerate]

Setup (not timed), in ``--dir`` (default: ``bench-train`` in the system temp folder, never
the repository), reused across runs unless ``--regenerate``: ``segmentation generate``
writes ``customers-<rows>.parquet``, then ``segmentation features`` builds its warehouse
(``SEGMENTATION_DATA`` / ``SEGMENTATION_WAREHOUSE`` pointing there). Timed: ``segmentation
train`` (selection on, default parameters) in a child process into a fresh store per run,
as a user runs it; wall time, the child's CPU time and its peak RSS come from ``wait4``.
The child's log gives each stage's seconds. Prints the 1-minute load average when each
run starts: the machine is shared, so compare figures taken under similar load.

Needs about 415 bytes of disk per customer (Parquet ~45, warehouse ~170, training's
temporary id-order buckets ~200, ``TMPDIR``): 21 GB for 50M customers; the script refuses
to start without it. Targets (issue 10): 10M customers in <= 90 s and <= 3 GB peak RSS; 50M
completes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The command a user runs (the virtual environment's entry point when there is one).
_SCRIPT = Path(sys.executable).with_name("segmentation")
SEGMENTATION = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "training.cli"]
#: Disk a customer needs (see the module docstring): its Parquet row and warehouse rows,
#: and, while training runs, its share of the id-order buckets.
DATA_BYTES_PER_ROW = 45 + 170
TRAIN_BYTES_PER_ROW = 200
STAGE = re.compile(r"train: (?P<stage>.+) done in (?P<seconds>[0-9.]+)s")


@dataclass
class Run:
    rows: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    load: float
    stages: dict[str, float] = field(default_factory=dict)


def _env(folder: Path, rows: int, store: Path | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "SEGMENTATION_DATA": str(folder / f"customers-{rows}.parquet"),
        "SEGMENTATION_WAREHOUSE": str(folder / f"warehouse-{rows}.duckdb"),
        "DBT_TARGET_PATH": str(folder / f"target-{rows}"),
        "DBT_LOG_PATH": str(folder / f"logs-{rows}"),
        "PYTHONPATH": str(ROOT),
    }
    if store is not None:
        env["SEGMENTATION_MODEL_STORE"] = str(store)
    return env


def _setup(folder: Path, rows: int, regenerate: bool) -> None:
    """Generate the file and build its features, unless a previous run left both."""
    env = _env(folder, rows)
    data, warehouse = Path(env["SEGMENTATION_DATA"]), Path(env["SEGMENTATION_WAREHOUSE"])
    if regenerate:
        data.unlink(missing_ok=True)
        warehouse.unlink(missing_ok=True)
    started = time.perf_counter()
    if not data.exists():
        subprocess.run(
            [*SEGMENTATION, "generate", "--rows", str(rows), "--output", str(data)],
            env=env,
            check=True,
            cwd=ROOT,
        )
    if not warehouse.exists():
        subprocess.run(
            [*SEGMENTATION, "features", "--quiet"],
            env=env,
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
    print(f"# {rows:,} customers ready in {folder} ({time.perf_counter() - started:.0f} s)")


def _train(folder: Path, rows: int, select: bool, run: int) -> Run:
    """One `segmentation train` child: wall and CPU seconds, peak RSS, stage seconds."""
    store = folder / f"store-{rows}-{run}"
    shutil.rmtree(store, ignore_errors=True)
    env = _env(folder, rows, store)
    if not select:
        env.update(SEGMENTATION_SELECT="false")
    log = folder / f"train-{rows}-{run}.log"
    load = os.getloadavg()[0]
    started = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen(
            [*SEGMENTATION, "train"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    text = log.read_text()
    if child.returncode != 0:
        raise SystemExit(f"segmentation train failed ({child.returncode}); see {log}")
    shutil.rmtree(store, ignore_errors=True)
    stages = {m["stage"]: float(m["seconds"]) for m in STAGE.finditer(text)}
    return Run(
        rows=rows,
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
        load=load,
        stages=stages,
    )


def _check_disk(folder: Path, sizes: list[int]) -> None:
    missing = [n for n in sizes if not Path(_env(folder, n)["SEGMENTATION_WAREHOUSE"]).exists()]
    need = TRAIN_BYTES_PER_ROW * max(sizes) + DATA_BYTES_PER_ROW * sum(missing)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise SystemExit(
            f"{folder}: expected {need / 1e9:.1f} GB free for {sizes} customers, "
            f"found {free / 1e9:.1f} GB; pass --dir elsewhere or fewer --rows"
        )


def _stage_label(stage: str) -> str:
    # Stage names carry row counts ("... on all 10,000,000 rows"): one label per stage.
    return re.sub(r"[0-9][0-9,]*", "N", stage)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000, 50_000_000])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "bench-train")
    parser.add_argument("--no-select", action="store_true", help="k=4 KMeans, no sweep")
    parser.add_argument("--regenerate", action="store_true", help="rebuild file and warehouse")
    args = parser.parse_args(argv)
    folder = args.dir.resolve()
    if folder.is_relative_to(ROOT):
        raise SystemExit(f"--dir {folder}: expected a folder outside the repository")
    folder.mkdir(parents=True, exist_ok=True)
    _check_disk(folder, args.rows)
    runs: list[Run] = []
    for rows in args.rows:
        _setup(folder, rows, args.regenerate)
        for i in range(args.repeat):
            run = _train(folder, rows, not args.no_select, i)
            runs.append(run)
            print(
                f"run {i + 1}: {rows:,} customers, {run.seconds:.1f} s, CPU {run.cpu_seconds:.1f}"
                f" s, peak RSS {run.peak_rss_mb:,.0f} MB, load {run.load:.1f}",
                flush=True,
            )
    print("\n| customers | wall s | CPU s | peak RSS MB | load at start |")
    print("|---:|---:|---:|---:|---:|")
    for r in runs:
        print(
            f"| {r.rows:,} | {r.seconds:.1f} | {r.cpu_seconds:.1f} | {r.peak_rss_mb:,.0f} "
            f"| {r.load:.1f} |"
        )
    labels = list(dict.fromkeys(_stage_label(s) for r in runs for s in r.stages))
    header = " | ".join(f"{r.rows:,} (run)" for r in runs)
    print(f"\n| stage (s) | {header} |\n|---|" + "---:|" * len(runs))
    for label in labels:
        cells = []
        for r in runs:
            by_label = {_stage_label(s): v for s, v in r.stages.items()}
            cells.append(f"{by_label[label]:.1f}" if label in by_label else "")
        print(f"| {label} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
