"""`segmentation retrain [--force] [--key KEY]`: the scheduled run, started by hand.

Exit status: 0 promoted, no retrain needed, duplicate key or busy; 1 the candidate was
rejected by the gates; 2 aborted (broken feed) or an error.
"""

from __future__ import annotations

import argparse
import json

from segmentation import Settings

HELP = "Run the scheduled retrain once: features, drift, decide, train, gate, promote."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="retrain whatever drift says")
    parser.add_argument("--key", help="idempotency key (default: a new one per call)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from training.retrain import run_retrain
    from training.retrain.trigger import from_cli

    summary = run_retrain(from_cli(args.key, args.force), settings)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, default=str))
    else:
        print(f"retrain: {summary.outcome} ({summary.trigger['key']})")
        for reason in summary.reasons:
            print(f"  reason: {reason}")
        if summary.drift:
            print(f"  drift: {summary.drift['level']} {', '.join(summary.drift['drifting'])}")
        if summary.version:
            print(f"  candidate: {summary.version}")
        for reason in (summary.gates or {}).get("reasons", []):
            print(f"  gate: {reason}")
    return summary.exit_status
