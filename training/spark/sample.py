"""The training sample from Spark's tables: where the card book is on Spark, training still
runs on one machine, on a seeded sample of the staged customers.

``segmentation sample`` writes the ``rows`` staged customers with the smallest
``xxhash64(customer_id, seed)`` to one Parquet file in the raw layout (CC GENERAL column
names, typed values): the same customers for the same seed and data, whatever the
partitioning. ``SEGMENTATION_DATA=<that file> segmentation train`` then stages, fits,
gates and publishes on DuckDB as for any raw file; the bundle scores the Spark tables with
``SEGMENTATION_ENGINE=spark segmentation score``. Everything the manifest counts (sizes,
profiles, drift bins) is then about the sample, which is a uniform draw of the customers.
"""

from __future__ import annotations

import os
from pathlib import Path

from segmentation import FeatureBuildError, Settings
from segmentation.schema import FIELDS, ID_NAME, ID_RAW_NAME
from training.features import STAGED_MODEL
from training.model.sampling import TRAINING_SAMPLE_ROWS
from training.spark.features import table_name
from training.spark.session import spark_session


def write_training_sample(
    settings: Settings, output: Path | str, rows: int = TRAINING_SAMPLE_ROWS
) -> int:
    """Write the seeded sample of ``stg_customers`` to ``output``; return its rows.

    Written to a temporary file beside ``output`` and renamed, so a reader never sees half
    a file. Raises FeatureBuildError when the features are not built on Spark.
    """
    import pyarrow.parquet as pq

    spark = spark_session(settings)
    staged = table_name(STAGED_MODEL)
    if not spark.catalog.tableExists(staged):
        raise FeatureBuildError(
            f"{staged}: not in the Spark warehouse {settings.spark_warehouse} "
            "(run `SEGMENTATION_ENGINE=spark segmentation features` first)"
        )
    columns = [f"{ID_NAME} as {ID_RAW_NAME}", *(f"{f.name} as {f.raw_name}" for f in FIELDS)]
    # A top-k by hash: each task keeps its k smallest, the driver merges them.
    sample = spark.sql(
        f"select {', '.join(columns)} from {staged} "
        f"order by xxhash64({ID_NAME}, {int(settings.seed)}), {ID_NAME} limit {int(rows)}"
    ).toArrow()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    pq.write_table(sample, partial)
    os.replace(partial, output)
    return sample.num_rows
