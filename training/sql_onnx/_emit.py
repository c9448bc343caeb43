"""DAG -> ONNX graph: one node per DAG operation, outputs concatenated once at the end."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from training.sql_onnx._ir import Node, reachable

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


def build_model(
    features: Sequence[Node],
    input_names: Sequence[str],
    opset: int,
    *,
    doc: str = "",
    prefix: str = "sqlf_",
    columns_output: str | None = None,
) -> onnx.ModelProto:
    """The graph: inputs ``input_names`` (double [N]) -> ``features`` (double [N, F]).

    With ``columns_output``, the same values are also an output of that name laid out
    ``[F, N]``: stacking columns is a memcpy each, while any ``[N, F]`` assembly copies
    element by element in onnxruntime (about 7 times slower), so a consumer that can
    work column-major (``Gemm`` with ``transA=1``) should read this one.
    """
    b = _Builder(prefix)
    for node in reachable(list(features)):
        b.names[node.uid] = b.emit(node)
    axis = 0 if columns_output else 1
    axes = b.constant(np.array([axis], dtype=np.int64), f"axis{axis}")
    columns = []
    for node in features:
        name = b.names[node.uid]
        if node.is_const:  # a constant feature still needs one value per row
            shape = b.add("Shape", [input_names[0]], "rows")
            name = b.add("Expand", [name, shape], "const_column")
        columns.append(b.add("Unsqueeze", [name, axes], "col"))
    outputs = [helper.make_tensor_value_info(OUTPUT, TensorProto.DOUBLE, ["N", len(features)])]
    if columns_output:
        b.nodes.append(helper.make_node("Concat", columns, [columns_output], axis=0))
        b.nodes.append(helper.make_node("Transpose", [columns_output], [OUTPUT], perm=[1, 0]))
        shape = [len(features), "N"]
        outputs.append(helper.make_tensor_value_info(columns_output, TensorProto.DOUBLE, shape))
    else:
        b.nodes.append(helper.make_node("Concat", columns, [OUTPUT], axis=1))
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
