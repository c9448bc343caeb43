"""`segmentation drift [--data FILE] [--json] [--no-record]`: drift against the current model.

Exit status: 0 no drift, 1 warn, 3 act (act-level drift that persisted), 2 an error.
"""

from __future__ import annotations

import argparse
import json

from segmentation import Settings

HELP = "Check the customers' drift from the current model; exit 0 none, 1 warn, 3 act."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="raw file to check (default: the warehouse's features)")
    parser.add_argument("--json", action="store_true", help="print the check as JSON")
    parser.add_argument(
        "--no-record", action="store_true", help="do not record the check in the store"
    )


def _table(check) -> str:
    rows = [("SIGNAL", "KIND", "LEVEL", "PSI", "JS", "SHARE PTS", "REF", "NOW")]
    for s in check.result.signals:
        cells = (s.psi, s.js_distance, s.max_share_change_points, s.reference, s.current)
        rows.append((s.name, s.kind, s.level, *("" if c is None else f"{c:.4f}" for c in cells)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from training.monitoring.check import EXIT_STATUS, check_drift

    check = check_drift(settings, data=args.data, record=not args.no_record)
    result = check.result
    if args.json:
        print(json.dumps(check.to_dict(), indent=2))
    else:
        print(_table(check))
        print(
            f"drift: {result.level} (raw {result.raw_level}) for model {result.model_version} "
            f"on {result.rows:,} customers"
        )
        for note in result.notes:
            print(f"note: {note}")
        if check.report_key:
            print(f"report: {settings.model_store}/{check.report_key}")
    return EXIT_STATUS[result.level]
