"""`segmentation models list|show VERSION|promote VERSION|rollback [--to VERSION]`.

Operates on the store named by ``SEGMENTATION_MODEL_STORE``. ``list`` prints a table with
the current version marked ``*``; ``promote`` and ``rollback`` move the pointer with a
compare-and-swap (see ``training/publish.py`` for the ordering rules).
"""

from __future__ import annotations

import argparse
import json

from segmentation import ModelContractError, Settings
from segmentation.store import ModelStore, open_store
from training.release import publish, tracking

HELP = "List, show, promote or roll back model versions."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="every version, oldest first; * marks the current one")
    show = actions.add_parser("show", help="one version's manifest summary and verification")
    show.add_argument("version")
    show.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    promote = actions.add_parser("promote", help="make VERSION current (verified first)")
    promote.add_argument("version")
    promote.add_argument(
        "--allow-older",
        action="store_true",
        help="allow a version older than the current one, or one withdrawn by a rollback",
    )
    rollback = actions.add_parser("rollback", help="point back to the previous version")
    rollback.add_argument("--to", dest="to_version", metavar="VERSION", help="target version")


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _status(info: publish.VersionInfo) -> str:
    if not info.complete:
        return "incomplete"
    if info.rejected:
        return "rejected"
    return "withdrawn" if info.withdrawn else "complete"


def _list(store: ModelStore) -> int:
    infos = publish.list_versions(store)
    if not infos:
        print(f"no versions in {store.uri}")
        return 0
    rows = [["", "VERSION", "CREATED (UTC)", "STATUS"]]
    for info in infos:
        created = info.created_at.strftime("%Y-%m-%d %H:%M:%S") if info.created_at else "?"
        rows.append(["*" if info.is_current else "", info.version, created, _status(info)])
    print(_table(rows))
    return 0


def _show(store: ModelStore, version: str, as_json: bool) -> int:
    manifest = publish.read_manifest(store, version)
    if as_json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return 0
    current, _ = store.read_pointer()
    try:
        publish.verify_version(store, version)
        verified = "yes"
    except ModelContractError as exc:
        verified = f"NO: {exc}"
    print(f"version:    {version}{'  (current)' if current and current.version == version else ''}")
    print(f"created_at: {manifest.get('created_at', '?')}")
    print(f"verified:   {verified}")
    rows = [["FILE", "SHA256"]] + [[n, s] for n, s in sorted(manifest.get("files", {}).items())]
    print(_table(rows))
    segments = manifest.get("segments") or []
    if segments:
        rows = [["SEGMENT", "NAME", "SHARE"]]
        for seg in segments:
            share = seg.get("share")
            shown = f"{share:.1%}" if isinstance(share, int | float) else "?"
            rows.append([str(seg.get("id")), str(seg.get("name", "")), shown])
        print(_table(rows))
    for name, value in sorted((manifest.get("metrics") or {}).items()):
        print(f"metric {name}: {value}")
    return 0 if verified == "yes" else 1


def run(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings.model_store)
    if args.action == "list":
        return _list(store)
    if args.action == "show":
        return _show(store, args.version, args.json)
    if args.action == "promote":
        pointer = publish.promote(store, args.version, allow_older=args.allow_older)
    else:
        pointer = publish.rollback(store, args.to_version)
    tracking.sync_champion(settings, store)  # MLflow's champion follows the pointer
    print(f"current: {pointer.version} (previous: {pointer.previous or 'none'})")
    return 0
