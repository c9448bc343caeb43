"""Time `segmentation train` (with model selection) on generated customers, stage by stage.

Usage: ``.venv/bin/python bench/bench_train.py [--rows 1000000] [--repeat 1] [--no-select]``

Setup (not timed): ``training.data.write_customers`` writes the customers and
``training.features.build_features`` runs ``dbt build`` into a temporary warehouse. Timed:
``training.train.train_and_publish`` into a fresh temporary store per run, with the
default parameters (selection on, six behaviour features, PCA 80%). Prints the seconds
of every stage (median over ``--repeat`` runs) and the total. The target (issue 4):
<= 60 s for 1M customers on the 2-core machine. Selection and stability run on seeded
samples (``training.selection.SelectionConfig``: 50,000 fit rows, 5,000 evaluation rows;
``training.choose.FINAL_FIT_ROWS`` for the final KMeans), so only the load, the
preprocessing, the assignment of every row, the profiles and the export gates grow
with the data.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from segmentation import Settings
from training.data import write_customers
from training.features import build_features
from training.model.params import TrainingParams
from training.train import train_and_publish


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-select", action="store_true", help="k=4 KMeans, no sweep")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every stage")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        data = write_customers(root / "customers.parquet", args.rows, seed=args.seed)
        settings = Settings(
            data=str(data),
            warehouse=str(root / "wh.duckdb"),
            dbt_target_path=str(root / "target"),
            dbt_log_path=str(root / "logs"),
        )
        build_features(settings)
        print(
            f"# Training benchmark: {args.rows:,} generated customers "
            f"(setup: generate + dbt build {time.perf_counter() - t:.1f} s, not timed)"
        )
        params = TrainingParams(seed=args.seed, select=not args.no_select)
        runs = []
        for i in range(args.repeat):
            store = Settings(
                data=settings.data, warehouse=settings.warehouse, model_store=str(root / f"s{i}")
            )
            result = train_and_publish(store, params)
            runs.append({**result.stages, "total": result.seconds})
            print(f"run {i + 1}: {result.summary()}", flush=True)
    print(f"\n| stage | median seconds over {args.repeat} run(s) |\n|---|---|")
    for stage in runs[0]:
        print(f"| {stage} | {statistics.median(r[stage] for r in runs):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
