"""`segmentation sample`: the training sample from the Spark warehouse (training.spark.sample)."""

from __future__ import annotations

import argparse
from pathlib import Path

from segmentation import ConfigError, Settings

HELP = "Write a seeded sample of Spark's staged customers to train on (Parquet)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, type=Path, help="Parquet file to write")
    parser.add_argument(
        "--rows", type=int, default=None, help="customers in the sample (default 200,000)"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    if settings.engine != "spark":
        raise ConfigError("SEGMENTATION_ENGINE: `segmentation sample` reads Spark's tables: spark")
    if args.output.suffix.lower() not in (".parquet", ".pq"):
        raise ConfigError(f"--output: expected a .parquet file, found {args.output}")
    from training.spark.sample import TRAINING_SAMPLE_ROWS, write_training_sample

    rows = write_training_sample(settings, args.output, args.rows or TRAINING_SAMPLE_ROWS)
    print(f"wrote {rows:,} customers to {args.output} (seed {settings.seed})")
    print(f"train on them: SEGMENTATION_DATA={args.output} segmentation train")
    return 0
