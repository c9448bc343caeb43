"""`segmentation train [--k K] [--algorithm A] [--no-select] [--cluster-features F,..|all]`.

Builds the features when the warehouse lacks them (or with ``--rebuild-features``), fits
the preprocessing, chooses k and the algorithm by the documented rule (unless both are
fixed, or ``--no-select``: k 4 and KMeans unless given), fits the servable clustering,
assesses stability, keeps segment ids stable against the current model, names and
explains the segments, exports one ONNX graph, runs the gates, publishes a version to
SEGMENTATION_MODEL_STORE and makes it current when every gate passes. Exit code 2 when a
gate refuses the model.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from segmentation import Settings
from training.progress import progress

if TYPE_CHECKING:
    from rich.console import Console

HELP = "Fit, export, verify, publish and promote a model version."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from training.model.params import ALGORITHMS

    parser.add_argument(
        "--k", type=int, help="number of segments (default: selected, or SEGMENTATION_K)"
    )
    parser.add_argument(
        "--algorithm",
        choices=ALGORITHMS,
        help="clustering algorithm (default: selected, or SEGMENTATION_ALGORITHM)",
    )
    parser.add_argument(
        "--no-select",
        action="store_true",
        help="skip the k/algorithm sweep (fast runs): k 4 and kmeans unless given",
    )
    parser.add_argument(
        "--cluster-features",
        help="comma list of customer_features columns to cluster, or 'all' "
        "(default: the six behaviour features, or SEGMENTATION_CLUSTER_FEATURES)",
    )
    parser.add_argument("--seed", type=int, help="random seed (default SEGMENTATION_SEED)")
    parser.add_argument(
        "--rebuild-features", action="store_true", help="run `dbt build` even if features exist"
    )
    parser.add_argument(
        "--no-promote", action="store_true", help="publish the version without making it current"
    )


def run(args: argparse.Namespace, settings: Settings, console: Console | None = None) -> int:
    """Train, publish and print the summary.

    ``console``: where progress is drawn (default: stderr, only when it is a terminal).
    """
    from training.model.params import TrainingParams, parse_cluster_features
    from training.train import train_and_publish

    overrides: dict = {}
    if args.cluster_features is not None:
        # None is a meaningful value ("all"), so it is passed apart from the other flags.
        overrides["cluster_features"] = parse_cluster_features(args.cluster_features)
    params = TrainingParams.from_settings(
        settings,
        k=args.k,
        algorithm=args.algorithm,
        select=False if args.no_select else None,
        seed=args.seed,
        rebuild_features=True if args.rebuild_features else None,
        promote=False if args.no_promote else None,
    )
    if overrides:
        params = TrainingParams(**{**params.__dict__, **overrides})
    with progress("train", console=console) as tracker:
        result = train_and_publish(settings, params, on_stage=tracker.stage)
    print(result.summary())
    return 0
