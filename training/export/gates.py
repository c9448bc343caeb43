"""Export: build ONE graph from raw columns to segment, and pass every gate, or nothing.

Nothing leaves :func:`export_model` unless every gate passed, on every training row: the
folded pipeline equals scikit-learn and skl2onnx, the joined graph's features equal
DuckDB's, its segment ids equal scikit-learn's, its scoring graph (no ``features``
output) answers as it does; it runs in a process that has only onnxruntime and numpy,
and the golden rows' outputs are recorded.

The rows stream (``training.features.row_source.RowSource``): one pass, chunk by chunk, runs
the graphs and scikit-learn once per chunk and feeds every gate's counter and the
``observers`` the caller passes (segment statistics, drift reference counts, ...), so
memory is bounded by a few chunks whatever the number of customers. A background thread
reads the next chunk and runs its graphs while this one is compared (DuckDB and
onnxruntime release the GIL); the golden rows come from the in-memory sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import onnx
from sklearn import config_context
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from segmentation import GateFailed
from training.export._runner import GraphRunner
from training.export.fold import folded_graph, n_segments
from training.export.golden import golden_inputs, record_golden_rows
from training.export.join import FeatureGraph, join_graphs, raw_feeds
from training.export.parity import (
    AgreementCounter,
    FeatureParity,
    FeatureParityCounter,
    FoldProof,
    FoldProver,
    LabelAgreement,
    check_agreement,
    sklearn_assign,
)
from training.export.scoring_graph import ScoringGraphCheck, ScoringGraphProof, scoring_graph
from training.features.row_source import RowSource, TrainingData
from training.model.params import TrainingParams


@dataclass(frozen=True)
class ExportResult:
    """A gated graph and the evidence; the graph carries no ``version`` metadata yet."""

    model: onnx.ModelProto
    scoring_model: onnx.ModelProto  # ``model`` without ``features``: what scoring runs
    feature_names: tuple[str, ...]
    stable_ids: np.ndarray
    feature_parity: FeatureParity
    agreement: LabelAgreement
    fold_proof: FoldProof
    scoring_proof: ScoringGraphProof
    golden_rows: list[dict]
    outputs: dict[str, np.ndarray]  # the graph's outputs on the sample's rows


@dataclass(frozen=True)
class ScoredChunk:
    """One chunk of training rows and every answer the export pass computed on it."""

    rows: TrainingData
    graph: dict[str, np.ndarray]  # the full graph's outputs: segment_id, distances, features
    labels: np.ndarray  # scikit-learn's cluster index (the final step's)
    distances: np.ndarray  # scikit-learn's centroid distances [n, K]


T = TypeVar("T")
R = TypeVar("R")

#: Accumulates a statistic over the export pass: called with every chunk, in order.
Observer = Callable[[ScoredChunk], None]


def export_model(
    features: FeatureGraph,
    pipeline: Pipeline,
    rows: RowSource,
    params: TrainingParams,
    stable_ids: np.ndarray | None = None,
    *,
    sample: TrainingData | None = None,
    observers: Sequence[Observer] = (),
) -> ExportResult:
    """Build the one graph and pass every gate on every row of ``rows``, or raise
    `GateFailed`.

    Parameters
    ----------
    features : the compiled feature graph (inputs: staged columns; output ``features``).
    pipeline : the pipeline fitted on (a sample of) the rows' features.
    rows : every training row (DuckDB's ``customer_features`` in ``features.feature_names``
        order, and the staged columns of the same customers), read chunk by chunk.
    params : tolerances and opset.
    stable_ids : segment id per KMeans cluster index (default: the index).
    sample : rows in memory for the golden rows and ``ExportResult.outputs`` (default:
        ``rows`` itself when it is a `TrainingData`).
    observers : each is called with every `ScoredChunk` of the pass, in order.
    """
    names = tuple(features.feature_names)
    k = n_segments(pipeline)
    ids = np.arange(k, dtype=np.int64) if stable_ids is None else np.asarray(stable_ids, np.int64)
    opset = next(o.version for o in features.model.opset_import if o.domain in ("", "ai.onnx"))
    folded = folded_graph(pipeline, ids, opset)
    model = join_graphs(features, folded)
    scoring = scoring_graph(model, features, folded)
    full = GraphRunner(model)
    fold_prover = FoldProver(
        folded, pipeline, ids, len(names), epsilon=params.margin_epsilon, opset=opset
    )
    parity = FeatureParityCounter(names, params.feature_rtol)
    agreement = AgreementCounter(params.margin_epsilon)
    scoring_check = ScoringGraphCheck(scoring, model)

    def run_graphs(chunk: TrainingData) -> tuple:
        # onnxruntime and DuckDB release the GIL: this runs one chunk ahead, in a thread.
        feeds = raw_feeds(chunk.raw)
        return chunk, feeds, full(feeds), scoring_check.run(feeds), fold_prover.run(chunk.features)

    # A scan may yield empty chunks; scikit-learn refuses zero rows, and they count nothing.
    chunks = (chunk for chunk in rows.chunks() if chunk.rows)
    for chunk, feeds, outputs, scored_outputs, folded_outputs in _ahead(chunks, run_graphs):
        parity.add(outputs["features"], chunk.features)
        labels, distances = _assign(pipeline, chunk.features, names)
        fold_prover.add(chunk.features, ids[labels], distances, folded_outputs)
        agreement.add(outputs["segment_id"], ids[labels], distances)
        scoring_check.add(feeds, outputs, scored_outputs)
        scored = ScoredChunk(chunk, outputs, labels, distances)
        for observe in observers:
            observe(scored)
    # The gates in the order they stand on each other: the pipeline's fold first.
    proof = fold_prover.result(params.min_label_agreement)
    feature_parity = parity.result()
    label_agreement = agreement.result()
    check_agreement("exported graph vs scikit-learn", label_agreement, params.min_label_agreement)
    scoring_proof = scoring_check.result()
    sample = sample if sample is not None else _in_memory(rows)
    sample_outputs = full(raw_feeds(sample.raw))
    golden_rows = golden_inputs(sample.raw, sample_outputs["segment_id"])
    golden = record_golden_rows(model, pipeline, golden_rows, ids, params)
    return ExportResult(
        model,
        scoring,
        names,
        ids,
        feature_parity,
        label_agreement,
        proof,
        scoring_proof,
        golden,
        sample_outputs,
    )


def _assign(pipeline: Pipeline, X: np.ndarray, names: tuple[str, ...]) -> tuple:
    """scikit-learn's labels and distances on one chunk, as `sklearn_assign` gives them.

    One BLAS/OpenMP thread: on a chunk, threads cost more than they save (measured 3x
    slower with two, the graphs of the next chunk running beside). Finiteness is checked
    once here instead of by every step's validation; infinity was never accepted.
    """
    infinite = np.isinf(X).any(axis=0)
    if infinite.any():
        found = [n for n, bad in zip(names, infinite, strict=True) if bad]
        raise GateFailed(
            f"customer_features: expected finite values or NULL, found infinity in {found}"
        )
    with threadpool_limits(limits=1), config_context(assume_finite=True):
        return sklearn_assign(pipeline, X)


_END = object()


def _ahead(items: Iterator[T], prepare: Callable[[T], R]) -> Iterator[R]:
    """``prepare(item)`` of every item, in order, computed in a background thread one item
    ahead of the consumer: reading the next chunk and running its graphs overlap with the
    numpy and scikit-learn work on this one (two cores)."""

    def step():
        item = next(items, _END)
        return _END if item is _END else prepare(item)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export")
    try:
        future = pool.submit(step)
        while (result := future.result()) is not _END:
            future = pool.submit(step)
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        close = getattr(items, "close", None)
        if close is not None:
            close()  # the source's connection and files, on the consumer's thread


def _in_memory(rows: RowSource) -> TrainingData:
    if not isinstance(rows, TrainingData):
        raise TypeError("export_model: pass sample= for rows that are not in memory")
    return rows
