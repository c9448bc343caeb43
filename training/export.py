"""Export: join the compiled feature graph and the folded pipeline into ONE graph, then gate.

The graph takes the 17 staged raw columns by name and returns ``segment_id``,
``distances`` and ``features`` (``docs/bundle-format.md``). Nothing leaves this module
unless every gate passed: features equal DuckDB's on every training row, segment ids
equal scikit-learn's, the graph runs in a process that has only onnxruntime and numpy,
and the golden rows' outputs are recorded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx
from onnx import compose, helper, numpy_helper
from sklearn.pipeline import Pipeline

from segmentation import FIELD_NAMES, GateFailed
from segmentation.schema import BY_NAME

from . import onnx_pipeline as op
from .pipeline import TrainingParams
from .sql_onnx import staged_ranges

#: Below this, two features count as equal whatever their ratio (float noise around 0).
FEATURE_ATOL = 1e-12


class FeatureGraph(Protocol):
    """What the SQL compiler returns (``training.sql_onnx.CompiledFeatures``)."""

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
    # compiler drop most Where nodes (training.sql_onnx._refine).
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


@dataclass(frozen=True)
class FeatureParity:
    """Per-feature count of rows where the graph and DuckDB disagree (all zero to pass)."""

    rows: int
    mismatches: dict[str, int]
    max_relative_error: float


def check_feature_parity(
    got: np.ndarray, expected: np.ndarray, feature_names: tuple[str, ...], rtol: float
) -> FeatureParity:
    """Gate: ONNX features equal DuckDB's on every row (``rtol``), NaN exactly where NULL is."""
    if got.shape != expected.shape:
        raise GateFailed(
            f"feature parity: graph returns {got.shape[1]} features, "
            f"customer_features has {expected.shape[1]}"
        )
    both_nan = np.isnan(got) & np.isnan(expected)
    close = np.isclose(got, expected, rtol=rtol, atol=FEATURE_ATOL) | both_nan
    mismatches = {n: int((~close[:, j]).sum()) for j, n in enumerate(feature_names)}
    with np.errstate(all="ignore"):
        rel = np.abs(got - expected) / np.maximum(np.abs(expected), FEATURE_ATOL)
    finite = np.isfinite(rel)
    parity = FeatureParity(
        rows=len(got),
        mismatches=mismatches,
        max_relative_error=float(rel[finite].max(initial=0.0)),
    )
    failing = {n: c for n, c in mismatches.items() if c}
    if failing:
        detail = ", ".join(f"'{n}' on {c} of {len(got)} rows" for n, c in failing.items())
        raise GateFailed(
            f"feature parity: ONNX features must equal DuckDB's customer_features "
            f"(relative {rtol:g}, NULL as NaN); differ: {detail}"
        )
    return parity


_ISOLATED_SCRIPT = r"""
import sys
STARTUP = set(sys.modules)  # the interpreter and site's .pth hooks, before any import
import importlib.abc, json
FORBIDDEN = set(sys.argv[2].split(","))
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"{name} is not available in the serving process")
sys.meta_path.insert(0, Refuse())
import numpy as np
import onnxruntime as ort
rows = json.load(sys.stdin)
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
feeds = {i.name: np.array([np.nan if r[i.name] is None else r[i.name] for r in rows], "float64")
         for i in session.get_inputs()}
names = [o.name for o in session.get_outputs()]
outs = dict(zip(names, session.run(names, feeds)))
loaded = sorted(m for m in set(sys.modules) - STARTUP if "." not in m
                and m not in sys.stdlib_module_names
                and getattr(sys.modules[m], "__file__", None) is not None)
json.dump({"outputs": {k: np.where(np.isnan(v), None, v).tolist() if v.dtype.kind == "f"
                       else v.tolist() for k, v in outs.items()}, "modules": loaded}, sys.stdout)
"""

#: The training stack; the isolated run refuses to import any of it.
_FORBIDDEN = ("sklearn", "skl2onnx", "onnx", "duckdb", "dbt", "scipy", "sqlglot", "pyarrow",
              "pandas", "matplotlib", "training", "segmentation", "joblib")  # fmt: skip


def run_isolated(model_bytes: bytes, rows: list[dict]) -> dict[str, np.ndarray]:
    """Gate: run the graph in a fresh ``python -I`` that can import only onnxruntime + numpy.

    Returns the outputs for ``rows`` (dicts of staged column -> value or None).
    """
    with tempfile.TemporaryDirectory(prefix="segmentation-isolated-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(model_bytes)
        proc = subprocess.run(
            [sys.executable, "-I", "-c", _ISOLATED_SCRIPT, str(path), ",".join(_FORBIDDEN)],
            input=json.dumps(rows),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp,
        )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise GateFailed(f"isolated run: the graph must run with onnxruntime + numpy; {last}")
    result = json.loads(proc.stdout)
    extra = sorted(set(result["modules"]) - {"numpy", "onnxruntime"})
    if extra:
        raise GateFailed(f"isolated run: expected only onnxruntime + numpy, also loaded {extra}")
    outs = result["outputs"]
    return {
        "segment_id": np.asarray(outs["segment_id"], dtype=np.int64),
        "distances": np.asarray(outs["distances"], dtype=np.float64),
        "features": np.asarray(outs["features"], dtype=np.float64),
    }


@dataclass(frozen=True)
class ExportResult:
    """A gated graph and the evidence; the graph carries no ``version`` metadata yet."""

    model: onnx.ModelProto
    feature_names: tuple[str, ...]
    stable_ids: np.ndarray
    feature_parity: FeatureParity
    agreement: op.LabelAgreement
    fold_proof: op.FoldProof
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
    k = op.n_segments(pipeline)
    ids = np.arange(k, dtype=np.int64) if stable_ids is None else np.asarray(stable_ids, np.int64)
    opset = next(o.version for o in features.model.opset_import if o.domain in ("", "ai.onnx"))
    folded = op.folded_graph(pipeline, ids, opset)
    proof = op.prove_folded(
        folded,
        pipeline,
        expected_features,
        ids,
        epsilon=params.margin_epsilon,
        min_share=params.min_label_agreement,
        opset=opset,
    )
    model = join_graphs(features, folded)
    outputs = op.run(model, raw_feeds(raw))
    parity = check_feature_parity(
        outputs["features"], expected_features, names, params.feature_rtol
    )
    sk_ids, sk_distances = op.sklearn_segments(pipeline, expected_features, ids)
    agreement = op.label_agreement(
        outputs["segment_id"], sk_ids, sk_distances, params.margin_epsilon
    )
    op.check_agreement("exported graph vs scikit-learn", agreement, params.min_label_agreement)
    rows = golden_inputs(raw, outputs["segment_id"])
    golden = record_golden_rows(model, pipeline, rows, ids, params)
    return ExportResult(model, names, ids, parity, agreement, proof, golden, outputs)


#: Columns a customer with no purchases has at zero.
_PURCHASE_COLUMNS = tuple(
    n for n in FIELD_NAMES if n.startswith(("purchases", "oneoff", "install"))
)


def golden_inputs(raw: dict[str, np.ndarray], segment_ids: np.ndarray) -> list[dict]:
    """Real-looking synthetic customers: each segment's median customer, then edge cases.

    Built from column medians, so no training customer's row is copied into the manifest.
    Edge cases: zero purchases, missing minimum payments, balance over the credit limit,
    missing credit limit.
    """

    def typical(mask: np.ndarray) -> dict:
        return {n: float(np.nanmedian(raw[n][mask])) for n in FIELD_NAMES}

    everyone = np.ones(len(segment_ids), dtype=bool)
    rows = [(f"typical of segment {s}", typical(segment_ids == s)) for s in np.unique(segment_ids)]
    base = typical(everyone)
    rows += [
        ("zero purchases", {**base, **dict.fromkeys(_PURCHASE_COLUMNS, 0.0)}),
        ("missing minimum payments", {**base, "minimum_payments": None}),
        ("balance over limit", {**base, "balance": 1.5 * base["credit_limit"]}),
        ("missing credit limit", {**base, "credit_limit": None}),
    ]
    return [{"name": name, "inputs": _tidy(values)} for name, values in rows]


def _tidy(values: dict) -> dict:
    """Round like real data (cents, whole counts, 6-digit frequencies) within schema bounds."""
    out = {}
    for name, value in values.items():
        field = BY_NAME[name]
        if value is None:
            out[name] = None
            continue
        value = min(max(value, field.minimum), field.maximum)
        digits = 0 if field.kind == "integer" else 2 if field.maximum > 2 else 6
        out[name] = float(round(value, digits))
    return out


def record_golden_rows(
    model: onnx.ModelProto,
    pipeline: Pipeline,
    rows: list[dict],
    stable_ids: np.ndarray,
    params: TrainingParams,
) -> list[dict]:
    """Gate: the golden rows' outputs, equal in-process, in an isolated process and in sklearn.

    Returns the rows with their expected ``segment_id``, ``distances`` and ``features``.
    """
    local = op.run(model, rows_to_feeds([r["inputs"] for r in rows]))
    isolated = run_isolated(model.SerializeToString(), [r["inputs"] for r in rows])
    if not np.array_equal(local["segment_id"], isolated["segment_id"]) or not all(
        np.allclose(local[n], isolated[n], rtol=1e-6, atol=0, equal_nan=True)
        for n in ("distances", "features")
    ):
        raise GateFailed("golden rows: the isolated process must reproduce the graph's outputs")
    sk_ids, sk_distances = op.sklearn_segments(pipeline, local["features"], stable_ids)
    agreement = op.label_agreement(local["segment_id"], sk_ids, sk_distances, params.margin_epsilon)
    op.check_agreement("golden rows vs scikit-learn", agreement, 1.0)
    return [
        {
            **row,
            "segment_id": int(local["segment_id"][i]),
            "distances": [float(d) for d in local["distances"][i]],
            "features": [None if np.isnan(f) else float(f) for f in local["features"][i]],
        }
        for i, row in enumerate(rows)
    ]
