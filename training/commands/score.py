"""`segmentation score`: batch-score the warehouse's customers with the current model.

Reads the store's pointer once and passes the version it names (with the manifest's
sha256) to ``dbt build --select customer_segments+`` as vars: the dbt Python model
``customer_segments`` loads and verifies exactly that version, never "whatever is
current" by the time dbt runs, and ``segment_profiles`` aggregates per segment.

With ``SEGMENTATION_ENGINE=spark`` the same version scores the Spark warehouse's
``stg_customers`` into its managed table ``customer_segments`` instead
(``training.spark.build``); the printed lines are the same.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from segmentation import Settings
from training.progress import progress

if TYPE_CHECKING:
    from rich.console import Console

HELP = "Score the warehouse's customers with the current model (batch)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="show only dbt's errors")


def run(args: argparse.Namespace, settings: Settings, console: Console | None = None) -> int:
    """Score, then print customers per segment and warnings.

    ``console``: where progress is drawn (default: stderr, only when it is a terminal).
    """
    from segmentation.store import open_store

    spark = settings.engine == "spark"
    with progress("score", console=console) as tracker:
        tracker.stage("reading the model store's pointer")
        pointer, _ = open_store(settings.model_store).read_pointer()
        if pointer is not None and spark:
            from training.spark.build import build_scores_spark

            tracker.stage(f"Spark scoring customer_segments with {pointer.version}")
            result = build_scores_spark(settings, pointer.version, pointer.manifest_sha256)
        elif pointer is not None:
            from training.features import build_scores

            tracker.stage(f"dbt build customer_segments+ with {pointer.version}")
            result = build_scores(
                settings, pointer.version, pointer.manifest_sha256, quiet=args.quiet
            )
    if pointer is None:
        print(
            f"no current model in {settings.model_store}: nothing scored, "
            "customer_segments not built (run `segmentation train`)"
        )
        return 0
    warehouse = settings.spark_warehouse if spark else settings.warehouse
    print(f"scored {result.customers} customers with model {result.version} into {warehouse}")
    for segment_id, name, count in result.segments:
        print(f"  segment {segment_id} {name}: {count} ({count / max(result.customers, 1):.1%})")
    for warning in result.warnings:
        print(f"warning: {warning}")
    return 0
