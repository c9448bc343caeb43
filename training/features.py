"""Run the dbt feature layer in-process: ``dbt build`` and the compiled feature SQL.

dbt runs through ``dbt.cli.main.dbtRunner`` with the project's own ``profiles.yml``, fully
offline (anonymous usage stats off). The raw file and the DuckDB warehouse come from
:class:`segmentation.Settings` and are passed as dbt vars, so nothing depends on the
process environment or on ``~/.dbt``. ``target/`` and ``logs/`` default to the project
folder; ``DBT_TARGET_PATH`` / ``DBT_LOG_PATH`` (or the keyword arguments) move them, which
parallel runs and tests must do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from segmentation import ConfigError, FeatureBuildError, Settings

log = logging.getLogger(__name__)

#: The dbt project shipped with this repository.
DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"
FEATURE_MODEL = "customer_features"
STAGED_MODEL = "stg_customers"
QUARANTINE_MODEL = "stg_customers__quarantine"
#: Separator between the reasons of one quarantined row (see base_customers.sql).
REASON_SEPARATOR = "; "
#: Compile against an in-memory database: the compiled SQL then names the same relation
#: whatever the warehouse file, so its hash is stable and no warehouse lock is taken.
_COMPILE_WAREHOUSE = ":memory:"
#: The Python logger dbt writes ``logs/dbt.log`` through (dbt.events.logging).
_DBT_FILE_LOGGER = "file_log"


@dataclass(frozen=True)
class BuildResult:
    """What one ``dbt build`` did.

    Row counts are ``None`` when the selection did not build that model (and it does
    not exist in the warehouse yet).
    """

    success: bool
    seconds: float
    staged_rows: int | None
    quarantined_rows: int | None
    feature_rows: int | None
    #: One line per warn-level test that found rows: ``"<test name>: <n> rows"``.
    warnings: tuple[str, ...] = ()
    #: Quarantined rows per failed rule (``"balance: minimum 0"`` -> count); a row
    #: failing two rules counts under both.
    quarantine_reasons: dict[str, int] = field(default_factory=dict)


def _is_local(location: str) -> bool:
    return "://" not in location and not location.startswith(":")


def _absolute(location: str) -> str:
    # dbt resolves relative paths against the process cwd, not the project: pin them.
    return str(Path(location).resolve()) if _is_local(location) else location


def _dbt_args(
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
    target_path = target_path or os.environ.get("DBT_TARGET_PATH")
    log_path = log_path or os.environ.get("DBT_LOG_PATH")
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


def _invoke(args: list[str]) -> Any:
    """Run dbt in-process and return its result, raising on a crash before any node ran."""
    # No network: dbt must not phone home, whoever calls this.
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from dbt.cli.main import dbtRunner  # heavy import, only when dbt actually runs

    try:
        with _closing_new_event_loops():
            outcome = dbtRunner().invoke([*args[:1], "--no-send-anonymous-usage-stats", *args[1:]])
    finally:
        _close_dbt_log_file()
    if outcome.exception is not None:
        raise FeatureBuildError(f"dbt {args[0]} could not run: {outcome.exception}")
    return outcome


def _first_line(message: str | None) -> str:
    return (message or "").strip().splitlines()[0] if (message or "").strip() else ""


def _summarise(results: Any) -> tuple[list[str], list[str]]:
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


def _count(con: duckdb.DuckDBPyConnection, relation: str) -> int | None:
    exists = con.execute(
        "select count(*) from information_schema.tables where table_name = ?", [relation]
    ).fetchone()
    if not exists or not exists[0]:
        return None
    row = con.execute(f'select count(*) from "{relation}"').fetchone()
    return int(row[0]) if row else None


def _reason_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    rows = con.execute(
        f"""
        select reason, count(*) as n
        from (
            select unnest(string_split(rejection_reason, '{REASON_SEPARATOR}')) as reason
            from "{QUARANTINE_MODEL}"
        )
        group by reason
        order by n desc, reason
        """
    ).fetchall()
    return dict(Counter({str(reason): int(n) for reason, n in rows}))


def _warehouse_counts(warehouse: str) -> tuple[int | None, int | None, int | None, dict]:
    # Same process as dbt-duckdb: connect with default settings so DuckDB's instance
    # cache hands back the database dbt may still hold open.
    con = duckdb.connect(warehouse)
    try:
        staged = _count(con, STAGED_MODEL)
        quarantined = _count(con, QUARANTINE_MODEL)
        reasons = _reason_counts(con) if quarantined else {}
        return staged, quarantined, _count(con, FEATURE_MODEL), reasons
    finally:
        con.close()


def _base_vars(settings: Settings, warehouse: str) -> dict[str, Any]:
    data = _absolute(settings.data)
    if _is_local(data) and not Path(data).is_file():
        raise ConfigError(f"SEGMENTATION_DATA: expected an existing CSV or Parquet file at {data}")
    # The model store feeds the batch-scoring model (customer_segments), if present.
    return {
        "segmentation_data": data,
        "segmentation_warehouse": warehouse,
        "segmentation_model_store": _absolute(settings.model_store),
    }


def build_features(
    settings: Settings,
    *,
    select: str | None = None,
    vars: dict[str, Any] | None = None,
    target_path: Path | str | None = None,
    log_path: Path | str | None = None,
    quiet: bool = False,
) -> BuildResult:
    """Run ``dbt build`` on ``settings.data`` into ``settings.warehouse``.

    Parameters
    ----------
    settings : where the raw file and the warehouse are.
    select : a dbt selection (``--select``); everything when None.
    vars : extra dbt vars, overriding the ones derived from ``settings``.
    target_path, log_path : dbt's ``target/`` and ``logs/`` folders; default
        ``DBT_TARGET_PATH`` / ``DBT_LOG_PATH``, then the project folder.
    quiet : show only dbt's errors instead of its progress lines.

    Returns
    -------
    BuildResult
        Timing, row counts, warn-level findings and the quarantine's reasons.

    Raises
    ------
    ConfigError
        The raw file does not exist.
    FeatureBuildError
        A model failed or an error-level data test found rows.
    """
    warehouse = _absolute(settings.warehouse)
    if _is_local(warehouse):
        Path(warehouse).parent.mkdir(parents=True, exist_ok=True)
    all_vars = {**_base_vars(settings, warehouse), **(vars or {})}
    args = _dbt_args(
        "build",
        vars=all_vars,
        select=select,
        target_path=target_path,
        log_path=log_path,
        quiet=quiet,
    )
    started = time.perf_counter()
    outcome = _invoke(args)
    seconds = time.perf_counter() - started
    warnings, failures = _summarise(outcome.result.results if outcome.result else [])
    if failures or not outcome.success:
        raise FeatureBuildError(
            f"dbt build failed ({len(failures)} failing nodes): " + "; ".join(failures)
        )
    staged, quarantined, features, reasons = _warehouse_counts(all_vars["segmentation_warehouse"])
    log.info("dbt build finished in %.1f s with %d warnings", seconds, len(warnings))
    return BuildResult(
        success=True,
        seconds=seconds,
        staged_rows=staged,
        quarantined_rows=quarantined,
        feature_rows=features,
        warnings=tuple(warnings),
        quarantine_reasons=reasons,
    )


def compiled_feature_sql(
    settings: Settings,
    *,
    target_path: Path | str | None = None,
    log_path: Path | str | None = None,
) -> str:
    """Return the compiled SELECT of ``customer_features``, the text the ONNX compiler parses.

    Compiled against an in-memory DuckDB, so the upstream relation is always
    ``"memory"."main"."stg_customers"`` and the text (and its hash) does not depend on the
    warehouse path. Nothing is read from the raw file or the warehouse.

    Parameters
    ----------
    settings : passed for symmetry with :func:`build_features`; only the data var is used.
    target_path, log_path : as in :func:`build_features`; default a temporary folder.

    Returns
    -------
    str
        The compiled SQL: CTEs of projections and a final select, one column per feature.
    """
    compile_vars = {
        "segmentation_data": _absolute(settings.data),
        "segmentation_warehouse": _COMPILE_WAREHOUSE,
    }
    with tempfile.TemporaryDirectory(prefix="segmentation-dbt-compile-") as scratch:
        args = _dbt_args(
            "compile",
            vars=compile_vars,
            select=FEATURE_MODEL,
            target_path=target_path or os.environ.get("DBT_TARGET_PATH") or Path(scratch),
            log_path=log_path or os.environ.get("DBT_LOG_PATH") or Path(scratch),
            quiet=False,
            # `dbt compile --select` prints the SQL even when quiet; the caller wants it
            # returned, not on stdout. Failures still raise with the node names.
            extra=("--log-level", "none", "--log-level-file", "info"),
        )
        outcome = _invoke(args)
        _, failures = _summarise(outcome.result.results if outcome.result else [])
        if failures or not outcome.success:
            raise FeatureBuildError("dbt compile failed: " + "; ".join(failures))
        nodes = [r.node for r in outcome.result.results if r.node.name == FEATURE_MODEL]
        if not nodes or not nodes[0].compiled_code:
            raise FeatureBuildError(f"dbt compile returned no SQL for {FEATURE_MODEL}")
        return str(nodes[0].compiled_code)
