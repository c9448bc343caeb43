"""`segmentation generate`: write realistic sample customers (CSV or Parquet)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from segmentation import Settings
from training.progress import progress

if TYPE_CHECKING:
    from rich.console import Console

HELP = "Write realistic sample customers (CSV or Parquet)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help="customers to write (default SEGMENTATION_SAMPLE_ROWS)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed (default SEGMENTATION_SEED)")
    parser.add_argument("--output", default=None, help="file to write (default SEGMENTATION_DATA)")
    parser.add_argument(
        "--format",
        choices=("csv", "parquet"),
        default=None,
        help="file format (default: from the output's suffix)",
    )
    parser.add_argument(
        "--dirty-fraction",
        type=float,
        default=0.0,
        help="share of rows made invalid on purpose, to exercise quarantine (default 0)",
    )


def run(args: argparse.Namespace, settings: Settings, console: Console | None = None) -> int:
    """Generate the sample data and print rows, path and seconds.

    ``console``: where progress is drawn (default: stderr, only when it is a terminal).
    """
    # Imported here so `segmentation --help` stays fast (pyarrow, params).
    from training.data import write_customers

    rows = settings.sample_rows if args.rows is None else args.rows
    seed = settings.seed if args.seed is None else args.seed
    output = Path(settings.data if args.output is None else args.output)
    started = time.perf_counter()
    with progress("generate", console=console) as tracker:
        tracker.stage(f"writing {rows:,} customers to {output.name}")
        path = write_customers(
            output, rows, seed=seed, fmt=args.format, dirty_fraction=args.dirty_fraction
        )
    seconds = time.perf_counter() - started
    print(
        f"wrote {rows:,} customers to {path} in {seconds:.2f} s "
        f"({rows / max(seconds, 1e-9):,.0f} rows/s, seed {seed})"
    )
    return 0
