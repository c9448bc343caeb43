"""``segmentation features`` on Spark: the same dbt project, built by dbt-spark in this
process's session into managed Parquet tables under ``settings.spark_warehouse``.

The raw file is checked at the edge as on DuckDB; dbt then declares it as the external
table ``raw.customers`` (macros/raw_source.sql) and builds staging, quarantine and
customer_features with their tests. Row counts and the quarantine's reasons are read back
from the tables, as ``training.features.build_features`` does from DuckDB.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from segmentation import Settings
from training.features import (
    FEATURE_MODEL,
    FEATURE_SELECTION,
    QUARANTINE_MODEL,
    STAGED_MODEL,
    BuildResult,
)
from training.features._dbt import dbt_args, run_build
from training.features.build import absolute, is_local
from training.features.raw_file import check_raw_file
from training.features.warehouse import REASON_SEPARATOR
from training.spark.session import spark_session

log = logging.getLogger(__name__)

#: The dbt profile's target for Spark (dbt_project/profiles.yml).
SPARK_TARGET = "spark"
#: The database dbt builds in (the profile's ``schema``).
SPARK_SCHEMA = "default"


def spark_vars(settings: Settings) -> dict[str, str]:
    """The dbt vars that point the ``spark`` profile target at ``settings``."""
    return {
        "segmentation_data": absolute(settings.data),
        "segmentation_spark_master": settings.spark_master,
        "segmentation_spark_warehouse": str(Path(settings.spark_warehouse).resolve()),
    }


def build_features(
    settings: Settings,
    *,
    select: str | None = FEATURE_SELECTION,
    vars: dict[str, Any] | None = None,
    target_path: Path | str | None = None,
    log_path: Path | str | None = None,
    quiet: bool = False,
) -> BuildResult:
    """``dbt build --target spark`` on ``settings.data``; as
    :func:`training.features.build_features` (same parameters, result and errors)."""
    data = absolute(settings.data)
    if is_local(data):
        check_raw_file(Path(data))
    spark = spark_session(settings)  # before dbt, so dbt-spark builds in this session
    args = dbt_args(
        "build",
        vars={**spark_vars(settings), **(vars or {})},
        select=select,
        target_path=target_path or settings.dbt_target_path,
        log_path=log_path or settings.dbt_log_path,
        quiet=quiet,
        target=SPARK_TARGET,
    )
    seconds, warnings = run_build(args)
    log.info("dbt build on Spark finished in %.1f s with %d warnings", seconds, len(warnings))
    return BuildResult.of(seconds, warnings, build_counts(spark))


def table_name(table: str) -> str:
    """``table``'s name in the Spark catalog."""
    return f"{SPARK_SCHEMA}.{table}"


def row_count(spark, table: str) -> int | None:
    """Rows of ``table``; None when it does not exist."""
    if not spark.catalog.tableExists(table_name(table)):
        return None
    return int(spark.table(table_name(table)).count())


def build_counts(spark) -> tuple[int | None, int | None, int | None, dict[str, int]]:
    """Staged, quarantined and feature rows, and the quarantine's reasons (most frequent
    first, a row under each of its rules), as ``training.features.warehouse.build_counts``."""
    quarantined = row_count(spark, QUARANTINE_MODEL)
    reasons = {}
    if quarantined:
        rows = spark.sql(
            f"""
            select reason, count(*) as n
            from {table_name(QUARANTINE_MODEL)}
            lateral view explode(split(rejection_reason, '{REASON_SEPARATOR}')) as reason
            group by reason
            order by n desc, reason
            """
        ).collect()
        reasons = {str(r.reason): int(r.n) for r in rows}
    return row_count(spark, STAGED_MODEL), quarantined, row_count(spark, FEATURE_MODEL), reasons
