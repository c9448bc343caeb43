"""Run dbt in-process (``dbt.cli.main.dbtRunner``) with the project's own ``profiles.yml``.

Fully offline: anonymous usage stats are off on every invocation. ``target/`` and
``logs/`` default to the project folder; ``Settings.dbt_target_path`` /
``Settings.dbt_log_path`` (or the keyword arguments) move them, which parallel runs and
tests must do. Output carries terminal colours only when stdout is a terminal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from segmentation import FeatureBuildError

#: The dbt project shipped with this repository.
DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
#: The Python logger dbt writes ``logs/dbt.log`` through (dbt.events.logging).
_DBT_FILE_LOGGER = "file_log"


def dbt_args(
    command: str,
    *,
    vars: dict[str, Any],
    select: str | None,
    target_path: Path | str | None,
    log_path: Path | str | None,
    quiet: bool,
    extra: tuple[str, ...] = (),
) -> list[str]:
    args = [
        command,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--vars",
        json.dumps(vars),
    ]
    if target_path:
        args += ["--target-path", str(target_path)]
    if log_path:
        args += ["--log-path", str(log_path)]
    if select:
        # Only tests whose parents are all selected: a test of a model outside the
        # selection (e.g. batch scoring's relationship to stg_customers) cannot pass.
        args += ["--select", select, "--indirect-selection", "cautious"]
    if quiet:
        args += ["--quiet"]
    return args + list(extra)


def _global_flags() -> list[str]:
    # Never phone home; colour codes only for a person at a terminal, never in log files.
    colours = "--use-colors" if sys.stdout.isatty() else "--no-use-colors"
    return ["--no-send-anonymous-usage-stats", colours, "--no-use-colors-file"]


@contextmanager
def _closing_new_event_loops() -> Iterator[None]:
    """Close the asyncio event loops created while dbt runs.

    dbt-duckdb 1.11 gives every worker thread that runs a Python model (such as
    ``customer_segments``) a fresh event loop and never closes it: each leaks a
    self-pipe socket pair and raises ResourceWarning when collected. Loops created
    through ``asyncio.new_event_loop`` during the run are closed afterwards, unless
    still running.
    """
    created: list[asyncio.AbstractEventLoop] = []
    original = asyncio.new_event_loop

    def tracking_new_event_loop() -> asyncio.AbstractEventLoop:
        loop = original()
        created.append(loop)
        return loop

    asyncio.new_event_loop = tracking_new_event_loop
    try:
        yield
    finally:
        asyncio.new_event_loop = original
        for loop in created:
            if not loop.is_running():
                loop.close()


def _close_dbt_log_file() -> None:
    """Close dbt's log file: dbt drops the handler at its next run without closing it."""
    dbt_file_log = logging.getLogger(_DBT_FILE_LOGGER)
    for handler in list(dbt_file_log.handlers):
        if isinstance(handler, logging.FileHandler):
            dbt_file_log.removeHandler(handler)
            handler.close()


def invoke(args: list[str]) -> Any:
    """Run dbt in-process and return its result, raising on a crash before any node ran."""
    from dbt.cli.main import dbtRunner  # heavy import, only when dbt actually runs

    try:
        with _closing_new_event_loops():
            outcome = dbtRunner().invoke([*args[:1], *_global_flags(), *args[1:]])
    finally:
        _close_dbt_log_file()
    if outcome.exception is not None:
        raise FeatureBuildError(f"dbt {args[0]} could not run: {outcome.exception}")
    return outcome


def _first_line(message: str | None) -> str:
    return (message or "").strip().splitlines()[0] if (message or "").strip() else ""


def summarise(results: Any) -> tuple[list[str], list[str]]:
    """Split node results into warning lines and failure lines (names and counts only)."""
    warnings, failures = [], []
    for result in results:
        status = str(result.status)
        name = result.node.name
        if status == "warn":
            warnings.append(f"{name}: {result.failures} rows")
        elif status == "fail":
            failures.append(f"test {name}: {result.failures} rows")
        elif status == "error":
            failures.append(f"{result.node.resource_type} {name}: {_first_line(result.message)}")
    return warnings, failures
