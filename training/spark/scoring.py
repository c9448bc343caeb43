"""Batch scoring on Spark: ``customer_segments`` rows from staged rows, in ``mapInArrow``.

The same rows, bit for bit, as DuckDB's ``customer_segments`` (the dbt Python model): the
bundle is loaded and verified ONCE, on the driver, exactly as serving and the dbt model
verify it; the workers get only what they need of it (:class:`ShippedBundle`: the verified
scoring graph's bytes, the manifest, the version) and run the core's
``segmentation.batch.score_columns`` and ``segment_slots`` on each Arrow batch, as the dbt
model does. They never read the model store.

One onnxruntime session per Python worker: Spark reuses a worker process for its next
tasks (``spark.python.worker.reuse``, on by default), so the session is kept in a module
level cache keyed by the graph's sha256 and built on the worker's first batch, not per
task or per batch (a session costs milliseconds and a few MB; a task may be 10k rows).

The worker side (:func:`score_partition`) imports neither pyspark nor any driver state: it
is pickled by reference with its :class:`ShippedBundle`, and callable in-process.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from segmentation import ModelContractError
from segmentation.batch import score_columns, segment_slots
from segmentation.bundle import Bundle, Manifest
from segmentation.bundle_format import sha256_hex
from segmentation.scoring import Scorer

#: The table's columns as DuckDB's customer_segments has them (VARCHAR, BIGINT, VARCHAR,
#: DOUBLE, VARCHAR). Plain strings: Spark's Arrow reader takes no dictionary or run-end
#: encoded columns, which the DuckDB model uses for segment_name and model_version.
ARROW_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("segment_id", pa.int64()),
        ("segment_name", pa.string()),
        ("distance", pa.float64()),
        ("model_version", pa.string()),
    ]
)
SPARK_SCHEMA = (
    "customer_id string, segment_id bigint, segment_name string, distance double, "
    "model_version string"
)


@dataclass(frozen=True)
class ShippedBundle:
    """What the workers need of a bundle verified on the driver, as plain picklable values.

    Shipped in the task's closure rather than an explicit broadcast: the scoring graph is
    tens of kB, and pyspark pickles the function once per job and sends it with each
    task; past 1 MB it broadcasts the pickled function by itself (``_prepare_for_python_RDD``).
    """

    graph: str  # the bundle file the scoring graph came from
    graph_bytes: bytes
    graph_sha256: str
    manifest: Manifest
    manifest_sha256: str
    model_sha256: str
    #: Threads per batch of ``score_columns``: Spark already runs one task per core.
    threads: int = 1

    @classmethod
    def of(cls, bundle: Bundle, threads: int = 1) -> ShippedBundle:
        return cls(
            graph=bundle.graph,
            graph_bytes=bundle.scorer.model_bytes,
            graph_sha256=bundle.manifest.files[bundle.graph],
            manifest=bundle.manifest,
            manifest_sha256=bundle.manifest_sha256,
            model_sha256=bundle.model_sha256,
            threads=threads,
        )


#: This process's onnxruntime sessions, by graph sha256 (a worker keeps its session for
#: every later batch, task and job).
_SCORERS: dict[str, Scorer] = {}
#: Sessions this process has built, by graph sha256: the documented test hook that shows
#: one per Python worker and graph (tests/test_spark_scoring.py reads it in the workers).
sessions_built: Counter[str] = Counter()


def _scorer(shipped: ShippedBundle) -> Scorer:
    scorer = _SCORERS.get(shipped.graph_sha256)
    if scorer is None:
        # Verified on the driver; checked again for the price of one hash per worker, so
        # a worker never runs bytes other than the manifest's.
        if sha256_hex(shipped.graph_bytes) != shipped.graph_sha256:
            raise ModelContractError(f"{shipped.graph}: sha256 differs from the manifest's")
        scorer = Scorer(shipped.graph_bytes, name=shipped.graph)
        _SCORERS[shipped.graph_sha256] = scorer
        sessions_built[shipped.graph_sha256] += 1
    return scorer


def _worker_bundle(shipped: ShippedBundle) -> Bundle:
    """The driver's verified bundle rebuilt around this worker's session (no re-check)."""
    manifest = shipped.manifest
    return Bundle(
        manifest=manifest,
        scorer=_scorer(shipped),
        manifest_sha256=shipped.manifest_sha256,
        model_sha256=shipped.model_sha256,
        segment_columns={s.id: j for j, s in enumerate(manifest.segments)},
        segment_names={s.id: s.name for s in manifest.segments},
        graph=shipped.graph,
    )


def score_partition(
    shipped: ShippedBundle, batches: Iterable[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """``customer_segments`` rows (:data:`ARROW_SCHEMA`) for each staged Arrow batch
    (customer_id and the graph's inputs as doubles), in order; empty batches give none.

    What each Spark task runs; the same steps as the dbt model's ``scored_batches``.
    """
    bundle = _worker_bundle(shipped)
    names = pa.array([s.name for s in bundle.manifest.segments], pa.string())
    version = pa.scalar(bundle.version, pa.string())
    for batch in batches:
        n = batch.num_rows
        if n == 0:
            continue
        # Views of the values when nothing is null; NULL becomes NaN otherwise, which the
        # graph imputes (as in the dbt model and the API).
        columns = {
            c: batch.column(c).to_numpy(zero_copy_only=False) for c in bundle.scorer.input_names
        }
        scores = score_columns(bundle, columns, threads=shipped.threads)
        slots = segment_slots(bundle, scores.segment_id).astype(np.int32)
        yield pa.RecordBatch.from_arrays(
            [
                batch.column("customer_id").cast(pa.string()),
                pa.array(scores.segment_id, pa.int64()),
                names.take(pa.array(slots)),
                pa.array(scores.distance, pa.float64()),
                pa.repeat(version, n),
            ],
            schema=ARROW_SCHEMA,
        )


def scored_frame(bundle: Bundle, staged):
    """The ``customer_segments`` rows of the staged customers, as a lazy Spark DataFrame.

    Parameters
    ----------
    bundle : a bundle verified on the driver (``segmentation.batch.load_version``).
    staged : a Spark DataFrame with ``customer_id`` and the staged fields the scoring
        graph reads (more columns are fine: only those are selected, as doubles).

    Returns
    -------
    pyspark.sql.DataFrame
        customer_id string, segment_id bigint, segment_name string, distance double,
        model_version string; one row per staged row, partitioned as ``staged``.
    """
    from pyspark.sql import functions as F

    projected = staged.select(
        F.col("customer_id").cast("string").alias("customer_id"),
        *(F.col(n).cast("double").alias(n) for n in bundle.scorer.input_names),
    )
    # Each task has spark.task.cpus cores (1 by default): score_columns' own threads
    # beyond those would only contend with the other tasks.
    threads = int(staged.sparkSession.sparkContext.getConf().get("spark.task.cpus", "1"))
    shipped = ShippedBundle.of(bundle, threads=threads)
    return projected.mapInArrow(functools.partial(score_partition, shipped), SPARK_SCHEMA)
