"""The dbt feature layer as training calls it: ``dbt build`` and the compiled feature SQL.

The raw file and the DuckDB warehouse come from :class:`segmentation.Settings` and are
passed as dbt vars, so nothing depends on the process environment or on ``~/.dbt``. The
raw file's header is checked before dbt runs (``training.features.raw_file``), so a wrong
layout is refused with the missing columns named instead of surfacing as a dbt error.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segmentation import FeatureBuildError, Settings
from training.features._dbt import dbt_args, invoke, run_build, summarise
from training.features.raw_file import check_raw_file
from training.features.warehouse import FEATURE_MODEL, build_counts

log = logging.getLogger(__name__)

#: What ``segmentation features`` and training build: the raw source, staging (base,
#: valid rows, quarantine), customer_features and their tests; never batch scoring,
#: which needs a model version (``training.features.scoring``).
FEATURE_SELECTION = "path:models/staging path:models/marts/customer_features.sql"
#: Compile against an in-memory database: the compiled SQL then names the same relation
#: whatever the warehouse file, so its hash is stable and no warehouse lock is taken.
_COMPILE_WAREHOUSE = ":memory:"


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

    @classmethod
    def of(cls, seconds: float, warnings: list[str], counts: tuple) -> BuildResult:
        """A successful build's result from its seconds, warning lines and the
        (staged, quarantined, features, reasons) counts read back from the engine."""
        staged, quarantined, features, reasons = counts
        return cls(
            success=True,
            seconds=seconds,
            staged_rows=staged,
            quarantined_rows=quarantined,
            feature_rows=features,
            warnings=tuple(warnings),
            quarantine_reasons=reasons,
        )


def is_local(location: str) -> bool:
    """Whether ``location`` is a local path (not a URI, not DuckDB's ``:memory:``)."""
    return "://" not in location and not location.startswith(":")


def absolute(location: str) -> str:
    """``location`` with a local path made absolute: dbt resolves relative paths against
    the process cwd, not the project."""
    return str(Path(location).resolve()) if is_local(location) else location


def build_features(
    settings: Settings,
    *,
    select: str | None = FEATURE_SELECTION,
    vars: dict[str, Any] | None = None,
    target_path: Path | str | None = None,
    log_path: Path | str | None = None,
    quiet: bool = False,
) -> BuildResult:
    """Run ``dbt build`` on ``settings.data`` into ``settings.warehouse``.

    Parameters
    ----------
    settings : where the raw file, the warehouse and dbt's folders are.
    select : a dbt selection; default :data:`FEATURE_SELECTION` (staging and
        features). Batch scoring is disabled without a model version var, so it is
        never built here: that is :func:`training.features.scoring.build_scores`.
    vars : extra dbt vars, overriding the ones derived from ``settings``.
    target_path, log_path : dbt's ``target/`` and ``logs/`` folders; default
        ``settings.dbt_target_path`` / ``dbt_log_path``, then the project folder.
    quiet : show only dbt's errors instead of its progress lines.

    Returns
    -------
    BuildResult
        Timing, row counts, warn-level findings and the quarantine's reasons.

    Raises
    ------
    InvalidInput
        The raw file is missing, empty, not CSV or Parquet, or lacks required columns.
    FeatureBuildError
        A model failed or an error-level data test found rows.
    """
    data = absolute(settings.data)
    if is_local(data):
        check_raw_file(Path(data))
    warehouse = absolute(settings.warehouse)
    if is_local(warehouse):
        Path(warehouse).parent.mkdir(parents=True, exist_ok=True)
    all_vars = {"segmentation_data": data, "segmentation_warehouse": warehouse, **(vars or {})}
    args = dbt_args(
        "build",
        vars=all_vars,
        select=select,
        target_path=target_path or settings.dbt_target_path,
        log_path=log_path or settings.dbt_log_path,
        quiet=quiet,
    )
    seconds, warnings = run_build(args)
    log.info("dbt build finished in %.1f s with %d warnings", seconds, len(warnings))
    return BuildResult.of(seconds, warnings, build_counts(all_vars["segmentation_warehouse"]))


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
    settings : dbt's ``target/`` and ``logs/`` folders (default: a temporary folder).
    target_path, log_path : override those folders, as in :func:`build_features`.

    Returns
    -------
    str
        The compiled SQL: CTEs of projections and a final select, one column per feature.
    """
    compile_vars = {
        "segmentation_data": absolute(settings.data),
        "segmentation_warehouse": _COMPILE_WAREHOUSE,
    }
    with tempfile.TemporaryDirectory(prefix="segmentation-dbt-compile-") as scratch:
        args = dbt_args(
            "compile",
            vars=compile_vars,
            select=FEATURE_MODEL,
            target_path=target_path or settings.dbt_target_path or Path(scratch),
            log_path=log_path or settings.dbt_log_path or Path(scratch),
            quiet=False,
            # `dbt compile --select` prints the SQL even when quiet; the caller wants it
            # returned, not on stdout. Failures still raise with the node names.
            extra=("--log-level", "none", "--log-level-file", "info"),
        )
        outcome = invoke(args)
        _, failures = summarise(outcome.result.results if outcome.result else [])
        if failures or not outcome.success:
            raise FeatureBuildError("dbt compile failed: " + "; ".join(failures))
        nodes = [r.node for r in outcome.result.results if r.node.name == FEATURE_MODEL]
        if not nodes or not nodes[0].compiled_code:
            raise FeatureBuildError(f"dbt compile returned no SQL for {FEATURE_MODEL}")
        return str(nodes[0].compiled_code)
