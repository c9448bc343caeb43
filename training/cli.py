"""`segmentation`: one command-line entry point with a subcommand per stage.

Each subcommand lives in ``training/commands/<name>.py`` and exposes ``HELP``,
``add_arguments(parser)`` and ``run(args, settings) -> int``. Modules are imported only
when their subcommand runs, so ``segmentation serve`` never imports training libraries.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from segmentation import SegmentationError, Settings

#: Subcommands in pipeline order (raw -> features -> model -> serving -> operations).
COMMANDS: dict[str, str] = {
    "generate": "Write realistic sample customers (CSV or Parquet).",
    "features": "Run `dbt build` on SEGMENTATION_DATA into SEGMENTATION_WAREHOUSE.",
    "sample": "Write a seeded sample of Spark's staged customers to train on (Parquet).",
    "train": "Fit, export, verify, publish and promote a model version.",
    "score": "Score the warehouse's customers with the current model (batch).",
    "serve": "Start the local emulator: predict and health over HTTP on 127.0.0.1.",
    "models": "List, show, promote or roll back model versions.",
    "drift": "Check the customers' drift from the current model (exit 0 none, 1 warn, 3 act).",
    "retrain": "Run the scheduled retrain once: features, drift, decide, train, gate, promote.",
    "runs": "List the run ledger: trigger, key, decision, drift, gates, metrics, outcome.",
    "contract": "Regenerate the dbt staging YAML and the OpenAPI document from the schema.",
}


def _load(name: str):
    return importlib.import_module(f"training.commands.{name}")


def build_parser(available: dict[str, object]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segmentation", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in available.items():
        sp = sub.add_parser(name, help=COMMANDS[name], description=COMMANDS[name])
        module.add_arguments(sp)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Import only the chosen subcommand's module (cheap start-up); --help lists them all.
    chosen = next((a for a in argv if a in COMMANDS), None)
    names = [chosen] if chosen else list(COMMANDS)
    available = {name: _load(name) for name in names}
    args = build_parser(available).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env()
        return int(available[args.command].run(args, settings) or 0)
    except SegmentationError as exc:
        print(f"segmentation {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
