"""The fitted pipeline as ONNX: the skl2onnx reference graph and the folded fast graph.

The reference is skl2onnx's conversion (with registered converters for the project's
steps: ``ColumnSelector`` as a Gather, ``QuantileClipper`` as Max/Min, ``CentroidAssigner``
with skl2onnx's own KMeans converter). The graph that ships is a folded equivalent: a
Gather(axis=1) of the clustering features (skipped when every feature is clustered),
imputation (ai.onnx.ml.Imputer), then column-major (one Transpose) clipping (Max/Min) in
float32 and ONE Gemm whose weights fold the scaler, the PCA projection and the
centroid-distance expansion ``||z - c||^2 = ||z||^2 - 2 z.c + ||c||^2`` with ``z = xW + b``,
then ArgMin, a Gather on the baked stable-id table and ``distances = Sqrt(Max(d2, 0))``.
`prove_folded` shows that it equals the reference and scikit-learn on the training data
before anything uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx, update_registered_converter
from skl2onnx.algebra.onnx_ops import OnnxGather, OnnxIdentity, OnnxMax, OnnxMin
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
from skl2onnx.common.utils import check_input_and_output_numbers
from skl2onnx.operator_converters.k_means import convert_sklearn_kmeans
from skl2onnx.shape_calculators.k_means import calculate_sklearn_kmeans_output_shapes
from sklearn.pipeline import Pipeline

from segmentation import GateFailed

from .pipeline import QuantileClipper
from .steps import CentroidAssigner, ColumnSelector

#: Input of the pipeline graphs; the export wires the feature graph's output into it.
PIPELINE_INPUT = "pipeline_features"
#: Prefix of every internal name, so the folded graph merges with any feature graph.
_P = "segmentation_pipeline/"
ML_OPSET = 3


def _clipper_shape(operator) -> None:
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=1)
    in_type = operator.inputs[0].type
    operator.outputs[0].type = in_type.__class__(list(in_type.shape))


def _clipper_convert(scope, operator, container) -> None:
    clipper = operator.raw_operator
    dtype = np.float64 if isinstance(operator.inputs[0].type, DoubleTensorType) else np.float32
    opv = container.target_opset
    low = OnnxMax(operator.inputs[0], clipper.lower_.astype(dtype), op_version=opv)
    out = OnnxMin(low, clipper.upper_.astype(dtype), op_version=opv, output_names=operator.outputs)
    out.add_to(scope, container)


def _selector_shape(operator) -> None:
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=1)
    in_type = operator.inputs[0].type
    width = len(operator.raw_operator.indices_)
    operator.outputs[0].type = in_type.__class__([in_type.shape[0], width])


def _selector_convert(scope, operator, container) -> None:
    selector = operator.raw_operator
    opv = container.target_opset
    if selector.is_identity:
        out = OnnxIdentity(operator.inputs[0], op_version=opv, output_names=operator.outputs)
    else:
        out = OnnxGather(
            operator.inputs[0],
            selector.indices_.astype(np.int64),
            axis=1,
            op_version=opv,
            output_names=operator.outputs,
        )
    out.add_to(scope, container)


def register_converters() -> None:
    """Register the project's steps with skl2onnx (idempotent)."""
    update_registered_converter(
        QuantileClipper, "SegmentationQuantileClipper", _clipper_shape, _clipper_convert
    )
    update_registered_converter(
        ColumnSelector, "SegmentationColumnSelector", _selector_shape, _selector_convert
    )
    # Served exactly like KMeans (nearest centroid, distances): the same converter.
    update_registered_converter(
        CentroidAssigner,
        "SegmentationCentroidAssigner",
        calculate_sklearn_kmeans_output_shapes,
        convert_sklearn_kmeans,
        options={"gemm": [True, False]},
    )


def n_segments(pipeline: Pipeline) -> int:
    """Number of segments of a fitted pipeline (rows of the final step's centroids)."""
    return len(pipeline[-1].cluster_centers_)


def reference_graph(pipeline: Pipeline, n_features: int, opset: int = 17) -> onnx.ModelProto:
    """skl2onnx's conversion of the fitted pipeline (``label`` and ``scores`` out).

    Float32 in, skl2onnx's default: its SimpleImputer converter emits ``ai.onnx.ml.Imputer``,
    which onnxruntime implements for float only.
    """
    register_converters()
    return to_onnx(
        pipeline,
        initial_types=[(PIPELINE_INPUT, FloatTensorType([None, n_features]))],
        target_opset={"": opset, "ai.onnx.ml": ML_OPSET},
    )


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


@dataclass(frozen=True)
class LabelAgreement:
    """How often two label vectors agree, overall and where the margin is clear."""

    share: float
    rows: int
    disagreements: int
    clear_disagreements: int  # disagreements on rows whose margin exceeds epsilon


def label_agreement(
    labels: np.ndarray, expected: np.ndarray, distances: np.ndarray, epsilon: float
) -> LabelAgreement:
    """Compare ``labels`` with ``expected``; ``distances`` [N, K] give each row's margin."""
    ordered = np.sort(distances, axis=1)
    margin = ordered[:, 1] - ordered[:, 0] if distances.shape[1] > 1 else np.full(len(labels), 1)
    wrong = labels != expected
    return LabelAgreement(
        share=float(1.0 - wrong.mean()) if len(labels) else 1.0,
        rows=len(labels),
        disagreements=int(wrong.sum()),
        clear_disagreements=int((wrong & (margin > epsilon)).sum()),
    )


def check_agreement(what: str, agreement: LabelAgreement, min_share: float) -> None:
    """Raise `GateFailed` unless the agreement meets the segment-id gate."""
    if agreement.clear_disagreements or agreement.share < min_share:
        raise GateFailed(
            f"{what}: segment ids must equal scikit-learn's on >= {min_share:.2%} of rows and "
            f"on every row with a clear margin; found {agreement.disagreements} of "
            f"{agreement.rows} rows differ, {agreement.clear_disagreements} with a clear margin"
        )


def sklearn_segments(
    pipeline: Pipeline, X: np.ndarray, stable_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's answer on ``X``: stable segment ids [N] and centroid distances [N, K]."""
    distances = pipeline[-1].transform(pipeline[:-1].transform(X))
    return np.asarray(stable_ids)[pipeline.predict(X)], distances


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``model`` once in onnxruntime; output names read from the session."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the graphs are checked, warnings are noise
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


@dataclass(frozen=True)
class FoldProof:
    """Evidence that the folded graph equals the reference graph and scikit-learn."""

    vs_sklearn: LabelAgreement
    vs_reference: LabelAgreement
    max_distance_error: float  # largest |folded - sklearn| distance, in clustering units


def prove_folded(
    folded: onnx.ModelProto,
    pipeline: Pipeline,
    X: np.ndarray,
    stable_ids: np.ndarray | None = None,
    *,
    epsilon: float = 1e-3,
    min_share: float = 0.999,
    opset: int = 17,
) -> FoldProof:
    """Show the folded graph equals skl2onnx and scikit-learn on ``X``; `GateFailed` if not."""
    k = n_segments(pipeline)
    ids = np.arange(k, dtype=np.int64) if stable_ids is None else np.asarray(stable_ids, np.int64)
    X = np.ascontiguousarray(X, dtype=np.float64)
    sk_ids, sk_dist = sklearn_segments(pipeline, X, ids)
    out = run(folded, {PIPELINE_INPUT: X})
    reference = reference_graph(pipeline, X.shape[1], opset)
    ref = run(reference, {PIPELINE_INPUT: X.astype(np.float32)})
    proof = FoldProof(
        vs_sklearn=label_agreement(out["segment_id"], sk_ids, sk_dist, epsilon),
        vs_reference=label_agreement(out["segment_id"], ids[ref["label"]], sk_dist, epsilon),
        max_distance_error=float(np.abs(out["distances"] - sk_dist).max(initial=0.0)),
    )
    check_agreement("folded graph vs scikit-learn", proof.vs_sklearn, min_share)
    check_agreement("folded graph vs skl2onnx", proof.vs_reference, min_share)
    # float32 rounding of d2 ~ 1e-7 * ||z||^2 becomes at most ~sqrt of it after Sqrt.
    tolerance = 1e-3 * (1.0 + float(sk_dist.max(initial=0.0)))
    if not proof.max_distance_error <= tolerance:
        raise GateFailed(
            f"folded graph: distances must equal scikit-learn's within {tolerance:.3g}; "
            f"found a difference of {proof.max_distance_error:.3g}"
        )
    return proof
