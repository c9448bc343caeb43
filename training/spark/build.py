"""``segmentation score`` on Spark: the managed table ``customer_segments`` for ONE version.

The Spark counterpart of :func:`training.features.scoring.build_scores`, with the same
result: the staged customers (the managed table ``stg_customers``) scored by the named
model version, verified on the driver before any Spark job runs, and written as a managed
Parquet table.

Replacing the table: Spark's own overwrite of a Parquet table in the session (Hive)
catalog is not atomic. ``saveAsTable(mode="overwrite")`` drops the table before its job
runs and ``insertInto(overwrite=True)`` deletes the files first, so a failed scoring
would leave no scores at all; an atomic ``REPLACE TABLE`` needs a v2 catalog (Delta,
Iceberg). So the rows are written to ``customer_segments__incoming`` and then swapped in
by two renames in the metastore (a directory rename each, no data rewritten): a failure
while scoring or writing leaves the previous table as it was. Readers may find no table
only between the two renames.
"""

from __future__ import annotations

import time

from segmentation import FeatureBuildError, Settings
from segmentation.batch import load_version
from training.features.scoring import ScoringResult
from training.features.warehouse import SEGMENTS_MODEL, STAGED_MODEL
from training.spark.scoring import scored_frame
from training.spark.session import spark_session

#: The scores are written here first, then renamed (see the module's docstring).
INCOMING = f"{SEGMENTS_MODEL}__incoming"
#: The previous table between the two renames, dropped after.
PREVIOUS = f"{SEGMENTS_MODEL}__previous"


def build_scores_spark(
    settings: Settings, version: str, manifest_sha256: str = ""
) -> ScoringResult:
    """Score the Spark warehouse's staged customers with model ``version``.

    Parameters
    ----------
    settings : the Spark session's settings and the model store.
    version, manifest_sha256 : the model version, as the store's pointer names it (an
        empty sha256 identifies the manifest by its bytes).

    Returns
    -------
    ScoringResult
        The version, timing and customers per segment (no warnings: the data tests of
        customer_segments are dbt's).

    Raises
    ------
    FeatureBuildError
        ``stg_customers`` does not exist, or the Spark job failed; the previous
        ``customer_segments`` is left as it was.
    ModelContractError
        The version is unknown or fails verification (before any Spark job runs).
    """
    spark = spark_session(settings)
    if not spark.catalog.tableExists(STAGED_MODEL):
        raise FeatureBuildError(
            f"Spark warehouse {settings.spark_warehouse}: expected {STAGED_MODEL} to score, "
            "found none (run `segmentation features` first)"
        )
    bundle = load_version(settings.model_store, version, manifest_sha256)
    started = time.perf_counter()
    _replace_table(spark, scored_frame(bundle, spark.table(STAGED_MODEL)))
    seconds = time.perf_counter() - started
    return ScoringResult(version=version, seconds=seconds, segments=_segment_counts(spark, version))


def _replace_table(spark, frame) -> None:
    from pyspark.errors import PySparkException

    spark.sql(f"drop table if exists {INCOMING}")  # a failed earlier run's leftover
    try:
        frame.write.format("parquet").saveAsTable(INCOMING)
    except PySparkException as exc:
        spark.sql(f"drop table if exists {INCOMING}")
        raise FeatureBuildError(
            f"{SEGMENTS_MODEL}: Spark scoring failed ({_reason(exc)}); "
            "the previous table is unchanged"
        ) from None
    spark.sql(f"drop table if exists {PREVIOUS}")
    if spark.catalog.tableExists(SEGMENTS_MODEL):
        spark.sql(f"alter table {SEGMENTS_MODEL} rename to {PREVIOUS}")
    spark.sql(f"alter table {INCOMING} rename to {SEGMENTS_MODEL}")
    spark.sql(f"drop table if exists {PREVIOUS}")


def _reason(exc: Exception) -> str:
    """The line that says why: a worker's exception (the last line of its Python
    traceback), else the first line of Spark's message; never the rows."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if any(line.startswith("Traceback") for line in lines):
        tail = [line for line in lines if not line.startswith(("at ", "JVM stacktrace"))]
        return tail[-1].removeprefix("segmentation.errors.")
    return lines[0]


def _segment_counts(spark, version: str) -> tuple[tuple[int, str, int], ...]:
    """(segment id, name, customers) in the written table: one aggregate over it."""
    from pyspark.sql import functions as F

    rows = (
        spark.table(SEGMENTS_MODEL)
        .where(F.col("model_version") == version)
        .groupBy("segment_id")
        .agg(F.first("segment_name").alias("segment_name"), F.count("*").alias("n"))
        .orderBy("segment_id")
        .collect()
    )
    return tuple((int(r.segment_id), str(r.segment_name), int(r.n)) for r in rows)
