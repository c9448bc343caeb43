"""`segmentation features`: run `dbt build` on SEGMENTATION_DATA into SEGMENTATION_WAREHOUSE.

Builds the feature layer (staging, quarantine, customer_features and their tests), never
batch scoring: that needs a model version and is `segmentation score`'s job. With
``SEGMENTATION_ENGINE=spark`` the same dbt project builds on Spark
(``training.spark.features``), into managed tables under SEGMENTATION_SPARK_WAREHOUSE.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from segmentation import Settings
from training.progress import progress

if TYPE_CHECKING:
    from rich.console import Console

HELP = "Run `dbt build` on SEGMENTATION_DATA into SEGMENTATION_WAREHOUSE."
#: Quarantine reasons listed, most frequent first; the rest are counted in one line.
TOP_REASONS = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the subcommand's options."""
    parser.add_argument(
        "--select", help="dbt selection (default: the feature layer, FEATURE_SELECTION)"
    )
    parser.add_argument("--quiet", action="store_true", help="hide dbt's progress lines")


def run(args: argparse.Namespace, settings: Settings, console: Console | None = None) -> int:
    """Build, then print row counts, the quarantine's reasons, warnings and seconds.

    ``console``: where progress is drawn (default: stderr, only when it is a terminal).
    """
    from training.features import FEATURE_SELECTION

    if settings.engine == "spark":
        from training.spark.features import build_features
    else:
        from training.features import build_features

    select = args.select or FEATURE_SELECTION
    with progress("features", console=console) as tracker:
        # dbt prints its own node lines above (unless --quiet); this line says how long.
        tracker.stage(f"dbt build of {Path(settings.data).name}")
        result = build_features(settings, select=select, quiet=args.quiet)
    print(f"staged: {_count(result.staged_rows)}")
    print(f"quarantined: {_count(result.quarantined_rows)}")
    reasons = list(result.quarantine_reasons.items())
    for reason, n in reasons[:TOP_REASONS]:
        print(f"  {reason}: {n:,}")
    if len(reasons) > TOP_REASONS:
        print(f"  ... {len(reasons) - TOP_REASONS} more reasons: see stg_customers__quarantine")
    print(f"features: {_count(result.feature_rows)}")
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(f"seconds: {result.seconds:.1f}")
    return 0


def _count(n: int | None) -> str:
    return "not built" if n is None else f"{n:,}"
