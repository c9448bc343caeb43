"""Join the compiled feature graph and the folded pipeline into ONE graph.

The graph takes the 17 staged raw columns by name and returns ``segment_id``,
``distances`` and ``features`` (``docs/bundle-format.md``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import onnx
from onnx import compose, helper, numpy_helper

from segmentation import FIELD_NAMES, GateFailed
from training.features.sql_onnx import staged_ranges


class FeatureGraph(Protocol):
    """What the SQL compiler returns (``training.features.sql_onnx.CompiledFeatures``)."""

    model: onnx.ModelProto
    feature_names: tuple[str, ...] | list[str]
    sql_sha256: str


#: The clustered features, float32 [N, F'], from the feature graph to the pipeline (internal).
CLUSTERING_FEED = "clustering_features"


def join_graphs(features: FeatureGraph, pipeline_graph: onnx.ModelProto) -> onnx.ModelProto:
    """One graph: raw columns -> ``features`` -> folded pipeline -> ``segment_id``, ``distances``.

    Inputs are exactly ``FIELD_NAMES`` in schema order (a column no feature reads stays an
    input, so every model has the same signature); ``feature_sql_sha256`` goes to metadata.
    ``features`` is float [N, F] (``docs/bundle-format.md``).

    onnxruntime runs every node of a graph whatever outputs a run asks for, so the graph
    is built to share work: the pipeline reads the feature values already rounded to
    float32 for ``features`` (its own Cast to float32 is dropped) and, when the feature
    graph can be re-emitted (the SQL compiler's can) and the pipeline gathers the columns
    it clusters on, it reads those columns directly instead of a Gather on ``features``.
    A re-emitted feature graph is built for the staged domain (`staged_ranges`): DuckDB's
    results for inputs within the schema's bounds and nullability.
    """
    pipeline_graph = onnx.ModelProto.FromString(pipeline_graph.SerializeToString())
    rebuild = getattr(features, "float_model", None)
    columns, target = _read_float(pipeline_graph.graph, drop_gather=rebuild is not None)
    # The staged domain (bounds, NOT NULL), which staging and serving enforce, lets the
    # compiler drop most Where nodes (training.features.sql_onnx._refine).
    ranges = staged_ranges(FIELD_NAMES)
    if rebuild is None:
        feature_model = _float_features(features.model)
    elif columns is None:
        feature_model = rebuild(input_ranges=ranges)
    else:
        feature_model = rebuild(CLUSTERING_FEED, columns, input_ranges=ranges)
    source = "features" if columns is None else CLUSTERING_FEED
    pipeline_graph.ir_version = feature_model.ir_version
    merged = compose.merge_models(
        feature_model,
        pipeline_graph,
        io_map=[(source, target)],
        outputs=["segment_id", "distances", "features"],
    )
    graph = merged.graph
    present = {i.name: i for i in graph.input}
    unknown = sorted(set(present) - set(FIELD_NAMES))
    if unknown:
        raise GateFailed(f"export: graph inputs {unknown} are not staged columns")
    inputs = [
        present.get(name) or helper.make_tensor_value_info(name, onnx.TensorProto.DOUBLE, ["N"])
        for name in FIELD_NAMES
    ]
    outputs = {o.name: o for o in graph.output}
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.output[:]
    graph.output.extend(outputs[n] for n in ("segment_id", "distances", "features"))
    graph.name = "segmentation"
    helper.set_model_props(merged, {"feature_sql_sha256": features.sql_sha256})
    onnx.checker.check_model(merged, full_check=True)
    return merged


def join_scoring_graph(
    features: FeatureGraph, pipeline_graph: onnx.ModelProto
) -> onnx.ModelProto | None:
    """Raw columns -> ``segment_id``, ``distances`` computing only the clustered features.

    The feature graph is re-emitted for the columns the pipeline gathers (the same nodes
    and rounding as :func:`join_graphs`'s, without the features nothing clusters on).
    None when the feature graph cannot be re-emitted or the pipeline reads every column
    some other way; the caller then cuts the full graph instead.
    """
    subset = getattr(features, "subset_model", None)
    if subset is None:
        return None
    pipeline_graph = onnx.ModelProto.FromString(pipeline_graph.SerializeToString())
    columns, target = _read_float(pipeline_graph.graph, drop_gather=True)
    if columns is None:
        return None
    feature_model = subset(columns, input_ranges=staged_ranges(FIELD_NAMES))
    pipeline_graph.ir_version = feature_model.ir_version
    merged = compose.merge_models(
        feature_model, pipeline_graph, io_map=[("features", target)], outputs=list(_SCORING)
    )
    graph = merged.graph
    read = {name for node in graph.node for name in node.input}
    kept = [i for name in FIELD_NAMES for i in graph.input if i.name == name and name in read]
    del graph.input[:]
    graph.input.extend(kept)
    outputs = {o.name: o for o in graph.output}
    del graph.output[:]
    graph.output.extend(outputs[n] for n in _SCORING)
    graph.name = "segmentation_scoring"
    helper.set_model_props(merged, {"feature_sql_sha256": features.sql_sha256})
    onnx.checker.check_model(merged, full_check=True)
    return merged


_SCORING = ("segment_id", "distances")


def _float_features(model: onnx.ModelProto) -> onnx.ModelProto:
    """A feature graph whose ``features`` is float: a Cast appended if it is double."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    out = next(o for o in model.graph.output if o.name == "features")
    if out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
        return model
    for node in model.graph.node:
        node.output[:] = ["features_double" if o == "features" else o for o in node.output]
    model.graph.node.append(
        helper.make_node("Cast", ["features_double"], ["features"], to=onnx.TensorProto.FLOAT)
    )
    out.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return model


def _read_float(graph: onnx.GraphProto, drop_gather: bool) -> tuple[list[int] | None, str]:
    """Make the pipeline read float32: returns the gathered columns (or None) and its input.

    The folded pipeline reads its input as ``[Gather(axis=1, constant indices) ->]
    Cast(to=float)``: the Cast is dropped and the input retyped float. With ``drop_gather``
    the Gather goes too and its output becomes the input, ``float [N, len(columns)]``.
    Any other reading gets a Cast from float to double in front, so the join stays valid.
    """
    (first,) = graph.input
    constants = {t.name: t for t in graph.initializer}
    readers = lambda name: [n for n in graph.node if name in n.input]  # noqa: E731
    chain = readers(first.name)
    gather = chain[0] if len(chain) == 1 and chain[0].op_type == "Gather" else None
    columns = None
    if gather is not None:
        indices = constants.get(gather.input[1])
        axis = next((a.i for a in gather.attribute if a.name == "axis"), 0)
        if axis == 1 and indices is not None and len(indices.dims) == 1:
            columns = [int(j) for j in numpy_helper.to_array(indices)]
            chain = readers(gather.output[0])
        else:
            gather = None
    cast = chain[0] if len(chain) == 1 and chain[0].op_type == "Cast" else None
    if cast is None or next(a.i for a in cast.attribute if a.name == "to") != _FLOAT:
        # Not the folded graph's reading: keep it, with double values as it expects.
        graph.node.insert(0, helper.make_node("Cast", ["float_in"], [first.name], to=_DOUBLE))
        first.name = "float_in"
        first.type.tensor_type.elem_type = _FLOAT
        return None, first.name
    for node in graph.node:  # readers of the Cast read its input instead
        node.input[:] = [cast.input[0] if i == cast.output[0] else i for i in node.input]
    graph.node.remove(cast)
    first.type.tensor_type.elem_type = _FLOAT
    if gather is None or not drop_gather:
        return None, first.name
    graph.node.remove(gather)
    if not readers(gather.input[1]):
        graph.initializer.remove(constants[gather.input[1]])
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(gather.output[0], _FLOAT, ["N", len(columns)]))
    return columns, gather.output[0]


_FLOAT, _DOUBLE = onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE


def raw_feeds(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The graph's feeds: every staged column as a contiguous float64 vector, NULL as NaN."""
    return {name: np.ascontiguousarray(raw[name], dtype=np.float64) for name in FIELD_NAMES}


def rows_to_feeds(rows: list[dict]) -> dict[str, np.ndarray]:
    """Feeds from customers as dicts of staged column -> value (None for NULL)."""
    return {
        n: np.array([np.nan if r[n] is None else r[n] for r in rows], dtype=np.float64)
        for n in FIELD_NAMES
    }
