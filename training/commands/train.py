"""`segmentation train [--k K] [--seed S] [--rebuild-features] [--no-promote]`.

Builds the features when the warehouse lacks them (or with ``--rebuild-features``), fits,
exports one ONNX graph, runs the gates, publishes a version to SEGMENTATION_MODEL_STORE
and makes it current when every gate passes. Exit code 2 when a gate refuses the model.
"""

from __future__ import annotations

import argparse

from segmentation import Settings

HELP = "Fit, export, verify, publish and promote a model version."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--k", type=int, help="number of segments (default 4 or SEGMENTATION_K)")
    parser.add_argument("--seed", type=int, help="random seed (default SEGMENTATION_SEED)")
    parser.add_argument(
        "--rebuild-features", action="store_true", help="run `dbt build` even if features exist"
    )
    parser.add_argument(
        "--no-promote", action="store_true", help="publish the version without making it current"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from training.pipeline import TrainingParams
    from training.train import train_and_publish

    params = TrainingParams.from_env(
        settings,
        k=args.k,
        seed=args.seed,
        rebuild_features=True if args.rebuild_features else None,
        promote=False if args.no_promote else None,
    )
    result = train_and_publish(settings, params)
    print(result.summary())
    return 0
