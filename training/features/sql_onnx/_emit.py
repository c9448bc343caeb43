"""DAG -> ONNX graph: one node per DAG operation, outputs concatenated once at the end.

A second output can hold chosen features rounded to float32, ``[N, F']``, for a consumer
that reads float32 anyway (the clustering path): it is assembled column-major (a memcpy
per column) then transposed by MLAS's blocked 32-bit path, about 6x cheaper in onnxruntime
than an element-by-element double ``[N, F]`` assembly, and it does not depend on
``features``. (onnxruntime runs every node of a graph whatever outputs a run asks for.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from training.features.sql_onnx._ir import Node, reachable

OUTPUT = "features"
_SIMPLE = {
    "add": "Add",
    "sub": "Sub",
    "mul": "Mul",
    "div": "Div",
    "neg": "Neg",
    "log": "Log",
    "exp": "Exp",
    "sqrt": "Sqrt",
    "abs": "Abs",
    "pow": "Pow",
    "floor": "Floor",
    "ceil": "Ceil",
    "round": "Round",
    "sign": "Sign",
    "where": "Where",
    "max": "Max",
    "min": "Min",
    "isnan": "IsNaN",
    "isinf": "IsInf",
    "gt": "Greater",
    "ge": "GreaterOrEqual",
    "lt": "Less",
    "le": "LessOrEqual",
    "eq": "Equal",
    "and": "And",
    "or": "Or",
    "not": "Not",
}


class _Builder:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.names: dict[int, str] = {}

    def fresh(self, hint: str) -> str:
        return f"{self.prefix}{hint}_{len(self.nodes) + len(self.initializers)}"

    def add(self, op_type: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.fresh(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def constant(self, array: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def emit(self, node: Node) -> str:
        ins = [self.names[a.uid] for a in node.args]
        if node.op == "input":
            return node.value
        if node.op == "const":
            dtype = np.bool_ if node.is_bool else np.float64
            return self.constant(np.array(node.value, dtype=dtype), "c")
        if node.op == "fmod":
            return self.add("Mod", ins, "mod", fmod=1)
        if node.op == "f32":
            narrow = self.add("Cast", ins, "f32", to=TensorProto.FLOAT)
            return self.add("Cast", [narrow], "f64", to=TensorProto.DOUBLE)
        if node.op == "b2d":
            return self.add("Cast", ins, "b2d", to=TensorProto.DOUBLE)
        return self.add(_SIMPLE[node.op], ins, node.op)

    def values(self, features: Sequence[Node], rows_of: str) -> list[str]:
        """Every feature (after its arguments) as a value per row, ``[N]``."""
        for node in reachable(list(features)):
            self.names[node.uid] = self.emit(node)
        values = []
        for node in features:
            name = self.names[node.uid]
            if node.is_const:  # a constant feature still needs one value per row
                shape = self.add("Shape", [rows_of], "rows")
                name = self.add("Expand", [name, shape], "const_column")
            values.append(name)
        return values

    def stack(self, values: Sequence[str], axis: int, out: str) -> None:
        """``values`` ([N] each) stacked into ``out``: ``[F, N]`` (axis 0) or ``[N, F]``."""
        if axis == 0:
            # Two nodes whatever F: the [N] vectors end to end, then viewed as [F, N].
            flat = self.add("Concat", list(values), "flat", axis=0)
            shape = self.constant(np.array([len(values), -1], dtype=np.int64), "shape")
            self.nodes.append(helper.make_node("Reshape", [flat, shape], [out]))
            return
        axes = self.constant(np.array([axis], dtype=np.int64), f"axis{axis}")
        columns = [self.add("Unsqueeze", [v, axes], "col") for v in values]
        self.nodes.append(helper.make_node("Concat", columns, [out], axis=axis))


def build_model(
    features: Sequence[Node],
    input_names: Sequence[str],
    opset: int,
    *,
    doc: str = "",
    prefix: str = "sqlf_",
    columns_output: str | None = None,
    float_features: bool = False,
    float_output: str | None = None,
    float_columns: Sequence[int] | None = None,
    float_by_column: bool = False,
) -> onnx.ModelProto:
    """The graph: inputs ``input_names`` (double [N]) -> ``features`` (double [N, F]).

    With ``columns_output``, the same values are also an output of that name laid out
    ``[F, N]`` (double): stacking columns is a memcpy each, while any ``[N, F]`` assembly
    copies element by element in onnxruntime (about 7 times slower).

    With ``float_features``, ``features`` is float [N, F]: the double values rounded to
    float32, assembled column-major then transposed by MLAS's blocked 32-bit path (about
    twice as fast in onnxruntime as the double ``[N, F]`` Concat).

    With ``float_output``, the features at ``float_columns`` (default: all, in order),
    rounded to float32, are also an output of that name, ``float [N, len(float_columns)]``
    (sharing the float32 casts with ``features`` when both are float); with
    ``float_by_column``, laid out ``[len(float_columns), N]`` instead (no transpose).
    """
    b = _Builder(prefix)
    values = b.values(features, input_names[0])
    every = list(range(len(features)))
    float_stack: list[str] = []

    def stacked_float() -> str:
        # Every feature stacked [F, N] in double (a memcpy per feature), rounded to float32
        # by ONE Cast: per-feature Casts cost a node each, and node count is what a
        # one-customer request pays for (about 0.5 us per node in onnxruntime).
        if not float_stack:
            doubles = b.fresh("by_column_f64")
            b.stack(values, 0, doubles)
            float_stack.append(b.add("Cast", [doubles], "narrow", to=TensorProto.FLOAT))
        return float_stack[0]

    def transposed(columns: list[int], out: str, by_row: bool = True) -> None:
        source = stacked_float()
        if columns != every:  # the rows wanted, in order: one Gather instead of a re-stack
            picked = b.constant(np.array(columns, dtype=np.int64), "columns")
            target = b.fresh("by_column") if by_row else out
            b.nodes.append(helper.make_node("Gather", [source, picked], [target], axis=0))
            source = target
        if by_row:
            b.nodes.append(helper.make_node("Transpose", [source], [out], perm=[1, 0]))
        elif source != out:
            b.nodes.append(helper.make_node("Identity", [source], [out]))

    kind = TensorProto.FLOAT if float_features else TensorProto.DOUBLE
    outputs = [helper.make_tensor_value_info(OUTPUT, kind, ["N", len(features)])]
    if columns_output:
        b.stack(values, 0, columns_output)
        shape = [len(features), "N"]
        outputs.append(helper.make_tensor_value_info(columns_output, TensorProto.DOUBLE, shape))
    if float_features:
        transposed(every, OUTPUT)
    elif columns_output:
        b.nodes.append(helper.make_node("Transpose", [columns_output], [OUTPUT], perm=[1, 0]))
    else:
        b.stack(values, 1, OUTPUT)
    if float_output:
        picked = every if float_columns is None else list(float_columns)
        if float_features and picked == every and not float_by_column:
            b.nodes.append(helper.make_node("Identity", [OUTPUT], [float_output]))
        else:
            transposed(picked, float_output, by_row=not float_by_column)
        shape = [len(picked), "N"] if float_by_column else ["N", len(picked)]
        outputs.append(helper.make_tensor_value_info(float_output, TensorProto.FLOAT, shape))
    graph = helper.make_graph(
        b.nodes,
        "sql_features",
        [helper.make_tensor_value_info(n, TensorProto.DOUBLE, ["N"]) for n in input_names],
        outputs,
        initializer=b.initializers,
        doc_string=doc,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="segmentation.sql_onnx",
    )
    # The oldest IR version that carries this opset: runtimes refuse newer IR than they know.
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    onnx.checker.check_model(model, full_check=True)
    return model
