"""The fitted pipeline as the folded fast graph that ships.

It is equivalent to skl2onnx's conversion (``training.export.converters``): a
Gather(axis=1) of the clustering features (skipped when every feature is clustered),
imputation (ai.onnx.ml.Imputer), then column-major (one Transpose) clipping (Max/Min) in
float32 and ONE Gemm whose weights fold the scaler, the PCA projection and the
centroid-distance expansion ``||z - c||^2 = ||z||^2 - 2 z.c + ||c||^2`` with ``z = xW + b``,
then ArgMin, a Gather on the baked stable-id table and ``distances = Sqrt(Max(d2, 0))``.
``training.export.parity.prove_folded`` shows that it equals the reference and
scikit-learn on the training data before anything uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.pipeline import Pipeline

from segmentation import GateFailed

#: Input of the pipeline graphs; the export wires the feature graph's output into it.
PIPELINE_INPUT = "pipeline_features"
#: Prefix of every internal name, so the folded graph merges with any feature graph.
_P = "segmentation_pipeline/"
ML_OPSET = 3


def n_segments(pipeline: Pipeline) -> int:
    """Number of segments of a fitted pipeline (rows of the final step's centroids)."""
    return len(pipeline[-1].cluster_centers_)


@dataclass(frozen=True)
class FoldedWeights:
    """The pipeline's linear algebra folded into float32 constants."""

    columns: np.ndarray | None  # [F] indices of the clustered features; None: all, in order
    medians: np.ndarray  # [F]
    lower: np.ndarray  # [F]
    upper: np.ndarray  # [F]
    matrix: np.ndarray  # [F, P + K]: [W | -2 W C'^T]
    bias: np.ndarray  # [P + K]: [b | -2 b C'^T + ||C'||^2]
    n_components: int


def fold_weights(pipeline: Pipeline) -> FoldedWeights:
    """Fold scaler, PCA and centroids into one matrix and bias (computed in float64)."""
    selector, imputer, clipper, scaler, pca = (pipeline.named_steps[s] for s in _STEPS)
    centroids = pipeline[-1].cluster_centers_
    scale = scaler.scale_ if scaler.scale_ is not None else np.ones(scaler.n_features_in_)
    mean = scaler.mean_ if scaler.mean_ is not None else np.zeros(scaler.n_features_in_)
    if pca.whiten:
        raise GateFailed("fold: PCA whitening is not folded; expected whiten=False")
    components = pca.components_  # [P, F]
    weight = components.T / scale[:, None]  # x -> z without the bias
    bias = -(mean / scale + pca.mean_) @ components.T
    # Distances are translation-invariant; centring the space on the centroids' mean keeps
    # ||z||^2 small, so the float32 expansion loses less to cancellation.
    shift = centroids.mean(axis=0)
    bias = bias - shift
    centers = centroids - shift  # [K, P]
    cross_w = -2.0 * weight @ centers.T
    cross_b = -2.0 * bias @ centers.T + (centers**2).sum(axis=1)
    return FoldedWeights(
        columns=None if selector.is_identity else selector.indices_.astype(np.int64),
        medians=imputer.statistics_.astype(np.float32),
        lower=clipper.lower_.astype(np.float32),
        upper=clipper.upper_.astype(np.float32),
        matrix=np.hstack([weight, cross_w]).astype(np.float32),
        bias=np.concatenate([bias, cross_b]).astype(np.float32),
        n_components=int(components.shape[0]),
    )


#: The preprocessing steps, by name; the final step (any name) holds ``cluster_centers_``.
_STEPS = ("select", "impute", "clip", "scale", "pca")


def folded_graph(
    pipeline: Pipeline, stable_ids: np.ndarray | None = None, opset: int = 17
) -> onnx.ModelProto:
    """The fast graph: ``pipeline_features`` double [N, F] -> ``segment_id``, ``distances``.

    Parameters
    ----------
    pipeline : the fitted pipeline from `training.pipeline.build_pipeline`.
    stable_ids : segment id for each cluster index (default: the index itself).
    opset : ai.onnx opset.
    """
    w = fold_weights(pipeline)
    k = w.matrix.shape[1] - w.n_components
    ids = np.arange(k, dtype=np.int64) if stable_ids is None else np.asarray(stable_ids, np.int64)
    if ids.shape != (k,) or len(set(ids.tolist())) != k:
        raise GateFailed(f"fold: stable ids: expected {k} distinct ids, found {ids.tolist()}")
    # Column-major after the Imputer: onnxruntime broadcasts a [F, 1] (or [1, N]) operand
    # over [F, N] with one vectorised loop per row, but [F] over [N, F] with a tiny loop
    # per sample (bench/bench_scoring.py: Max on 6 features 2.4 vs 17 ns/row, the [K, N]
    # + [1, N] Add 1.0 vs 11.9; whole pipeline about 25 instead of 90 ns/row).
    consts = {
        "lower": w.lower[:, None],
        "upper": w.upper[:, None],
        "weights_t": np.ascontiguousarray(w.matrix.T),
        "bias": w.bias[:, None],
        "split": np.array([w.n_components, k], np.int64),
        "zero": np.array(0.0, np.float32),
        "stable_ids": ids,
    }
    n = _P  # short alias for readability of the node list below
    n_inputs = pipeline.named_steps["select"].n_features_in_
    if opset >= 18:  # ReduceSumSquare takes its axes as an input from opset 18
        consts["axes"] = np.array([0], np.int64)
        sum_square = helper.make_node("ReduceSumSquare", [n + "z", n + "axes"], [n + "zz"])
    else:
        sum_square = helper.make_node("ReduceSumSquare", [n + "z"], [n + "zz"], axes=[0])
    nodes = []
    source = PIPELINE_INPUT
    if w.columns is not None:
        # The clustering features only; every feature still reaches the `features` output.
        consts["columns"] = w.columns
        nodes.append(helper.make_node("Gather", [source, n + "columns"], [n + "selected"], axis=1))
        source = n + "selected"
    nodes += [
        helper.make_node("Cast", [source], [n + "x"], to=TensorProto.FLOAT),
        # ai.onnx.ml.Imputer: one pass over [N, F]; about 3x faster in onnxruntime than
        # IsNaN + a broadcast Where (measured by bench/bench_scoring.py's profile).
        helper.make_node(
            "Imputer",
            [n + "x"],
            [n + "imputed"],
            domain="ai.onnx.ml",
            imputed_value_floats=w.medians.tolist(),
            replaced_value_float=float("nan"),
        ),
        helper.make_node("Transpose", [n + "imputed"], [n + "by_column"], perm=[1, 0]),
        helper.make_node("Max", [n + "by_column", n + "lower"], [n + "raised"]),
        helper.make_node("Min", [n + "raised", n + "upper"], [n + "clipped"]),
        # [P + K, F] @ [F, N] + [P + K, 1]: the affine map, column-major.
        helper.make_node("Gemm", [n + "weights_t", n + "clipped", n + "bias"], [n + "affine"]),
        helper.make_node("Split", [n + "affine", n + "split"], [n + "z", n + "cross"], axis=0),
        sum_square,  # keepdims: zz is [1, N]
        helper.make_node("Add", [n + "cross", n + "zz"], [n + "d2"]),
        helper.make_node("ArgMin", [n + "d2"], [n + "nearest"], axis=0, keepdims=0),
        helper.make_node("Gather", [n + "stable_ids", n + "nearest"], ["segment_id"], axis=0),
        helper.make_node("Max", [n + "d2", n + "zero"], [n + "d2_clamped"]),
        helper.make_node("Sqrt", [n + "d2_clamped"], [n + "distances_by_column"]),
        helper.make_node("Transpose", [n + "distances_by_column"], ["distances"], perm=[1, 0]),
    ]
    graph = helper.make_graph(
        nodes,
        "segmentation_pipeline",
        [helper.make_tensor_value_info(PIPELINE_INPUT, TensorProto.DOUBLE, ["N", n_inputs])],
        [
            helper.make_tensor_value_info("segment_id", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("distances", TensorProto.FLOAT, ["N", k]),
        ],
        initializer=[numpy_helper.from_array(v, n + name) for name, v in consts.items()],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
    )
    model.ir_version = 8  # onnxruntime 1.20+ reads it; matches opset 17's IR
    onnx.checker.check_model(model, full_check=True)
    return model
