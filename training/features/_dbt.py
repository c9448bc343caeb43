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
import time
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
    target: str | None = None,
) -> list[str]:
    """dbt's arguments for ``command`` on the project; ``target`` a profile target other
    than the default DuckDB one (``spark``)."""
    args = [
        command,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--vars",
        json.dumps(vars),
    ]
    if target:
        args += ["--target", target]
    if target_path:
        args += ["--target-path", str(target_path)]
    if log_path:
        args += ["--log-path", str(log_path)]
    if select:
        # Tests whose parents are selected or upstream of the selection: the feature
        # layer's row balance (it reads the source) and batch scoring's relationship to
        # stg_customers run, while a test of a model built later (scoring, during
        # `segmentation features`) does not.
        args += ["--select", select, "--indirect-selection", "buildable"]
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


def run_build(args: list[str]) -> tuple[float, list[str]]:
    """Run ``dbt build`` with ``args``; return its seconds and warning lines.

    Raises
    ------
    FeatureBuildError
        A model failed or an error-level data test found rows; the message names them.
    """
    started = time.perf_counter()
    outcome = invoke(args)
    seconds = time.perf_counter() - started
    warnings, failures = summarise(outcome.result.results if outcome.result else [])
    if failures or not outcome.success:
        raise FeatureBuildError(
            f"dbt build failed ({len(failures)} failing nodes): " + "; ".join(failures)
        )
    return seconds, warnings


def _reason(message: str | None) -> str:
    """The line of a node's error that says why: a Python model's exception (the last
    line of its traceback) or the database's error under dbt's "Runtime Error in ..."."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    if not lines:
        return ""
    if any(line.startswith("Traceback") for line in lines):
        return lines[-1].removeprefix("segmentation.errors.")
    return lines[1] if len(lines) > 1 and lines[0].endswith(")") else lines[0]


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
            failures.append(f"{result.node.resource_type} {name}: {_reason(result.message)}")
    return warnings, failures
