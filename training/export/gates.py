"""Export: build ONE graph from raw columns to segment, and pass every gate, or nothing.

Nothing leaves :func:`export_model` unless every gate passed: the folded pipeline equals
scikit-learn and skl2onnx, the joined graph's features equal DuckDB's on every training
row, its segment ids equal scikit-learn's, it runs in a process that has only
onnxruntime and numpy, its scoring graph (no ``features`` output) answers as it does on
every row, and the golden rows' outputs are recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from sklearn.pipeline import Pipeline

from training.export.fold import folded_graph, n_segments
from training.export.golden import golden_inputs, record_golden_rows
from training.export.join import FeatureGraph, join_graphs, raw_feeds
from training.export.parity import (
    FeatureParity,
    FoldProof,
    LabelAgreement,
    check_agreement,
    check_feature_parity,
    label_agreement,
    prove_folded,
    run,
    sklearn_segments,
)
from training.export.scoring_graph import ScoringGraphProof, check_scoring_graph, scoring_graph
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
    outputs: dict[str, np.ndarray]  # the graph's outputs on every training row


def export_model(
    features: FeatureGraph,
    pipeline: Pipeline,
    raw: dict[str, np.ndarray],
    expected_features: np.ndarray,
    params: TrainingParams,
    stable_ids: np.ndarray | None = None,
) -> ExportResult:
    """Build the one graph and pass every gate, or raise `GateFailed`.

    Parameters
    ----------
    features : the compiled feature graph (inputs: staged columns; output ``features``).
    pipeline : the pipeline fitted on ``expected_features``.
    raw : staged columns of the training rows, same row order as ``expected_features``.
    expected_features : DuckDB's ``customer_features`` [N, F], columns in
        ``features.feature_names`` order.
    params : tolerances and opset.
    stable_ids : segment id per KMeans cluster index (default: the index).
    """
    names = tuple(features.feature_names)
    k = n_segments(pipeline)
    ids = np.arange(k, dtype=np.int64) if stable_ids is None else np.asarray(stable_ids, np.int64)
    opset = next(o.version for o in features.model.opset_import if o.domain in ("", "ai.onnx"))
    folded = folded_graph(pipeline, ids, opset)
    proof = prove_folded(
        folded,
        pipeline,
        expected_features,
        ids,
        epsilon=params.margin_epsilon,
        min_share=params.min_label_agreement,
        opset=opset,
    )
    model = join_graphs(features, folded)
    feeds = raw_feeds(raw)
    outputs = run(model, feeds)
    parity = check_feature_parity(
        outputs["features"], expected_features, names, params.feature_rtol
    )
    sk_ids, sk_distances = sklearn_segments(pipeline, expected_features, ids)
    agreement = label_agreement(outputs["segment_id"], sk_ids, sk_distances, params.margin_epsilon)
    check_agreement("exported graph vs scikit-learn", agreement, params.min_label_agreement)
    scoring = scoring_graph(model, features, folded)
    scoring_proof = check_scoring_graph(scoring, model, outputs, feeds)
    rows = golden_inputs(raw, outputs["segment_id"])
    golden = record_golden_rows(model, pipeline, rows, ids, params)
    return ExportResult(
        model, scoring, names, ids, parity, agreement, proof, scoring_proof, golden, outputs
    )
