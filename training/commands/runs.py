"""`segmentation runs [--json] [--last N]`: the run ledger, oldest first.

Each training or retrain run: when it started, its trigger and key, the decision and its
reasons, the drift level, the gates' verdict, the candidate version, seconds and outcome.
A run that started and never finished (killed) shows as ``started``.
"""

from __future__ import annotations

import argparse
import json

from segmentation import Settings
from segmentation.store import open_store

HELP = "List the run ledger: trigger, key, decision, drift, gates, metrics, outcome."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--last", type=int, default=20, help="newest N runs (default 20)")
    parser.add_argument("--json", action="store_true", help="print the records as JSON")


def _row(run) -> list[str]:
    done = run.finished or {}
    trigger = run.started.get("trigger") or {}
    gates = done.get("gates") or {}
    verdict = "" if not gates else "passed" if gates.get("passed") else "; ".join(gates["reasons"])
    seconds = done.get("seconds")
    return [
        run.run_id,
        run.started.get("kind", ""),
        trigger.get("key", ""),
        run.status,
        "; ".join(done.get("reasons") or []),
        (done.get("drift") or {}).get("level", ""),
        verdict,
        done.get("version", ""),
        "" if seconds is None else f"{seconds:.1f}",
    ]


def run(args: argparse.Namespace, settings: Settings) -> int:
    from training.release.ledger import list_runs

    runs = list_runs(open_store(settings.model_store))[-args.last :]
    if args.json:
        docs = [{"run_id": r.run_id, "started": r.started, "finished": r.finished} for r in runs]
        print(json.dumps(docs, indent=2, default=str))
        return 0
    if not runs:
        print(f"no runs in {settings.model_store}")
        return 0
    header = ["RUN", "KIND", "KEY", "OUTCOME", "DECISION", "DRIFT", "GATES", "VERSION", "SECONDS"]
    rows = [header] + [_row(r) for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0
