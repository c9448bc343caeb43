"""skl2onnx converters for the project's steps, and skl2onnx's own conversion of a pipeline.

The reference graph is what the folded graph (``training.export.fold``) is proven equal
to before export.
"""

from __future__ import annotations

import numpy as np
import onnx
from skl2onnx import to_onnx, update_registered_converter
from skl2onnx.algebra.onnx_ops import OnnxGather, OnnxIdentity, OnnxMax, OnnxMin
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
from skl2onnx.common.utils import check_input_and_output_numbers
from skl2onnx.operator_converters.k_means import convert_sklearn_kmeans
from skl2onnx.shape_calculators.k_means import calculate_sklearn_kmeans_output_shapes
from sklearn.pipeline import Pipeline

from training.export.fold import ML_OPSET, PIPELINE_INPUT
from training.model.steps import CentroidAssigner, ColumnSelector, QuantileClipper


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
