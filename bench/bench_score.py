"""Time `segmentation score` on generated customers: wall, peak memory, and where it goes.

Usage::

    .venv/bin/python bench/bench_score.py [--rows 10000000] [--train-rows 200000]
        [--repeat 3] [--dir /tmp/bench-score] [--regenerate]

Setup (not timed), in ``--dir`` (default: ``bench-score`` in the system temp folder, never
the repository), reused across runs unless ``--regenerate``: ``segmentation generate`` and
``segmentation features`` for ``--train-rows`` customers, ``segmentation train
--no-select`` into the folder's store (the model only needs to exist: scoring does not
depend on how it was chosen), then ``generate`` and ``features`` for ``--rows`` customers
into the warehouse scored. Timed, each in a fresh child process:

- ``segmentation score --quiet`` as a user runs it: wall time, CPU time and peak RSS from
  ``wait4``, and each dbt node's time from ``run_results.json`` (the ``customer_segments``
  Python model; the SQL models built from it; their data tests; the rest is dbt's start,
  parse and the bundle's verification);
- the scoring itself, in process (after one batch scored to warm up: the first imports
  pyarrow's pandas bridge and sizes onnxruntime's arena, timed apart): the staged rows
  streamed from DuckDB in the model's Arrow batches (``customer_id`` and the columns the
  scoring graph reads) and scored by the model's own generator
  (``customer_segments.scored_batches``: ``score_columns``, ids to names, the next batch
  read ahead by a thread as in the model) without writing them; read alone, then read and
  scored, so what the scoring adds is their difference.

Prints medians over ``--repeat`` runs and the 1-minute load average at each start: the
machine is shared, so compare figures taken under similar load. Targets (issue 10): peak
RSS <= 1.5 GB on 10M staged customers, the scoring itself >= 15M customers/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("segmentation")
SEGMENTATION = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "training.cli"]
MODEL = ROOT / "dbt_project" / "models" / "marts" / "customer_segments.py"


def _env(folder: Path, rows: int) -> dict[str, str]:
    return {
        **os.environ,
        "SEGMENTATION_DATA": str(folder / f"customers-{rows}.parquet"),
        "SEGMENTATION_WAREHOUSE": str(folder / f"warehouse-{rows}.duckdb"),
        "SEGMENTATION_MODEL_STORE": str(folder / "store"),
        "DBT_TARGET_PATH": str(folder / f"target-{rows}"),
        "DBT_LOG_PATH": str(folder / f"logs-{rows}"),
    }


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Run a command: wall seconds, CPU seconds and peak RSS MB (``wait4``), its stdout."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if child.returncode:
            raise SystemExit(f"{' '.join(argv)} failed:\n{err.read().decode()[-3000:]}")
        text = out.read().decode()
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, text


def setup(folder: Path, rows: int, train_rows: int, regenerate: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in (train_rows, rows):
        env = _env(folder, n)
        if regenerate or not Path(env["SEGMENTATION_WAREHOUSE"]).exists():
            print(f"setup: generate and features, {n:,} customers", flush=True)
            _run([*SEGMENTATION, "generate", "--rows", str(n), "--seed", str(n % 997)], env)
            _run([*SEGMENTATION, "features", "--quiet"], env)
    store = folder / "store"
    if regenerate or not (store / "current.json").exists():
        print(f"setup: train on {train_rows:,} customers", flush=True)
        _run([*SEGMENTATION, "train", "--no-select"], _env(folder, train_rows))


def _nodes(target: Path) -> dict[str, float]:
    results = json.loads((target / "run_results.json").read_text())
    groups = {"customer_segments model": 0.0, "downstream models": 0.0, "data tests": 0.0}
    for r in results["results"]:
        if r["unique_id"] == "model.segmentation.customer_segments":
            groups["customer_segments model"] += r["execution_time"]
        elif r["unique_id"].startswith("model."):
            groups["downstream models"] += r["execution_time"]
        else:
            groups["data tests"] += r["execution_time"]
    groups["dbt run (all nodes, dbt's own clock)"] = results["elapsed_time"]
    return groups


def time_score(folder: Path, rows: int) -> dict[str, float]:
    env = _env(folder, rows)
    load = os.getloadavg()[0]
    wall, cpu, rss, out = _run([*SEGMENTATION, "score", "--quiet"], env)
    if f"scored {rows} customers" not in out:
        raise SystemExit(f"unexpected output: {out[:500]}")
    return {"load": load, "wall s": wall, "cpu s": cpu, "peak RSS MB": rss} | _nodes(
        Path(env["DBT_TARGET_PATH"])
    )


def child_scoring(warehouse: str, store: str) -> None:
    """In this process: the scoring alone, without dbt and without writing (prints JSON)."""
    import importlib.util

    import duckdb

    from segmentation.bundle import load_bundle
    from segmentation.store import open_store

    spec = importlib.util.spec_from_file_location("customer_segments_model", MODEL)
    model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model)
    started = time.perf_counter()
    source = open_store(store)
    bundle = load_bundle(source, source.read_pointer()[0])
    verify = time.perf_counter() - started
    with duckdb.connect(warehouse, read_only=True) as con:
        staged = con.table("stg_customers")
        projection = model._projection(bundle.scorer.input_names)

        def reader():
            return staged.project(projection).to_arrow_reader(model.BATCH_ROWS)

        # One batch first: pyarrow's pandas bridge is imported on first use and
        # onnxruntime allocates its arena on the first run (once per process).
        started = time.perf_counter()
        next(model.scored_batches(bundle, reader()))
        warm = time.perf_counter() - started
        started = time.perf_counter()
        rows = sum(batch.num_rows for batch in reader())
        read = time.perf_counter() - started
        started = time.perf_counter()
        scored_batches = model.scored_batches(bundle, model.read_ahead(reader()))
        scored = sum(batch.num_rows for batch in scored_batches)
        both = time.perf_counter() - started
    assert scored == rows
    print(
        json.dumps({"rows": rows, "verify": verify, "warm": warm, "read": read, "read+score": both})
    )


def time_scoring(folder: Path, rows: int) -> dict[str, float]:
    env = _env(folder, rows)
    warehouse, store = env["SEGMENTATION_WAREHOUSE"], str(folder / "store")
    argv = [sys.executable, __file__, "--child", warehouse, store]
    load = os.getloadavg()[0]
    *_, out = _run(argv, env)
    got = json.loads(out.strip().splitlines()[-1])
    score = got["read+score"] - got["read"]
    return {
        "load": load,
        "bundle load + verify s": got["verify"],
        "first batch s (imports, allocation)": got["warm"],
        "read s": got["read"],
        "read + score s": got["read+score"],
        "read + score M rows/s": got["rows"] / got["read+score"] / 1e6,
        "score alone M rows/s": got["rows"] / score / 1e6 if score > 0 else float("inf"),
    }


def _median_table(title: str, runs: list[dict[str, float]]) -> str:
    lines = [f"| {title} | median | runs |", "|---|---:|---|"]
    for key in runs[0]:
        values = [r[key] for r in runs]
        each = ", ".join(f"{v:,.2f}" for v in values)
        lines.append(f"| {key} | {statistics.median(values):,.2f} | {each} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.path.insert(0, str(ROOT))
        child_scoring(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--train-rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "bench-score")
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()
    setup(args.dir, args.rows, args.train_rows, args.regenerate)
    commands = [time_score(args.dir, args.rows) for _ in range(args.repeat)]
    scoring = [time_scoring(args.dir, args.rows) for _ in range(args.repeat)]
    print(f"\n`segmentation score --quiet`, {args.rows:,} staged customers, {os.cpu_count()} cpus")
    print(_median_table("measure", commands))
    print(f"\nthe scoring alone (in process, no dbt, nothing written), {args.rows:,} customers")
    print(_median_table("measure", scoring))


if __name__ == "__main__":
    main()
