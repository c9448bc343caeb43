"""Export: one graph from raw columns to segment, and the gates that refuse a bad one.

The feature graph here is a small hand-written stand-in for the SQL compiler's output,
with DuckDB computing the same SQL, so the gates are tested independently of the compiler.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segmentation import FIELD_NAMES, GateFailed
from segmentation.schema import FIELDS
from training.export import fold, gates, isolated, join, parity
from training.features.row_source import TrainingData
from training.model.params import TrainingParams
from training.model.pipeline import build_pipeline

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cc_general.csv"

#: name -> (DuckDB SQL, ONNX builder over the input names): the same feature twice.
STANDIN = {
    "credit_utilization_ratio": (
        "balance / credit_limit",
        lambda b: b.div("balance", "credit_limit"),
    ),
    "purchases_per_month": ("purchases_trx / tenure", lambda b: b.div("purchases_trx", "tenure")),
    "log_balance": ("ln(1 + balance)", lambda b: b.log1p("balance")),
    "log_purchases": ("ln(1 + purchases)", lambda b: b.log1p("purchases")),
    "log_cash_advance": ("ln(1 + cash_advance)", lambda b: b.log1p("cash_advance")),
    "log_minimum_payments": ("ln(1 + minimum_payments)", lambda b: b.log1p("minimum_payments")),
    "purchases_frequency": ("purchases_frequency", lambda b: b.same("purchases_frequency")),
    "cash_advance_frequency": (
        "cash_advance_frequency",
        lambda b: b.same("cash_advance_frequency"),
    ),
}


@dataclass(frozen=True)
class StandInFeatures:
    """Shaped like ``training.features.sql_onnx.CompiledFeatures``."""

    model: onnx.ModelProto
    feature_names: tuple[str, ...]
    sql_sha256: str


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.count = 0

    def _op(self, kind: str, *ins: str) -> str:
        self.count += 1
        out = f"standin/{kind}{self.count}"
        self.nodes.append(helper.make_node(kind, list(ins), [out]))
        return out

    def div(self, a: str, b: str) -> str:
        return self._op("Div", a, b)

    def log1p(self, a: str) -> str:
        return self._op("Log", self._op("Add", a, "standin/one"))

    def same(self, a: str) -> str:
        return self._op("Identity", a)


def standin_features(broken: str | None = None) -> StandInFeatures:
    """The stand-in graph; ``broken`` names a feature computed as ln(2 + x) instead."""
    b = _Builder()
    columns = []
    for name, (_, build) in STANDIN.items():
        out = build(b)
        if name == broken:
            out = b._op("Add", out, "standin/drift")
        columns.append(b._op("Unsqueeze", out, "standin/axis1"))
    b.nodes.append(helper.make_node("Concat", columns, ["features"], axis=1))
    consts = {"one": 1.0, "drift": np.log(1.5), "axis1": np.array([1], np.int64)}
    graph = helper.make_graph(
        b.nodes,
        "standin_features",
        [helper.make_tensor_value_info(n, TensorProto.DOUBLE, ["N"]) for n in FIELD_NAMES],
        [helper.make_tensor_value_info("features", TensorProto.DOUBLE, ["N", len(STANDIN)])],
        initializer=[
            numpy_helper.from_array(np.asarray(v), f"standin/{k}") for k, v in consts.items()
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return StandInFeatures(model, tuple(STANDIN), "0" * 64)


@pytest.fixture(scope="module")
def training_rows() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Staged columns of the real file and DuckDB's stand-in features, same row order."""
    staged = ", ".join(f"{f.raw_name}::double as {f.name}" for f in FIELDS)
    sql = ", ".join(f"{expr} as {name}" for name, (expr, _) in STANDIN.items())
    with duckdb.connect() as con:
        con.execute(
            f"create table stg as select CUST_ID as customer_id, {staged} "
            f"from read_csv('{DATA}') order by customer_id"
        )
        raw = con.execute(f"select {', '.join(FIELD_NAMES)} from stg order by customer_id")
        raw = raw.fetchnumpy()
        feats = con.execute(f"select {sql} from stg order by customer_id").fetchnumpy()
    fill = lambda a: np.ma.filled(np.ma.asarray(a, dtype=np.float64), np.nan)  # noqa: E731
    return {n: fill(raw[n]) for n in FIELD_NAMES}, np.column_stack(
        [fill(feats[n]) for n in STANDIN]
    )


def in_memory(raw: dict[str, np.ndarray], features: np.ndarray) -> TrainingData:
    """The rows as export reads them (customer ids are not read by the gates)."""
    return TrainingData(np.arange(len(features)).astype(str), features, raw)


@pytest.fixture(scope="module")
def fitted(training_rows):
    params = TrainingParams(k=4, seed=7)
    return params, build_pipeline(params).fit(training_rows[1])


@pytest.fixture(scope="module")
def exported(training_rows, fitted) -> gates.ExportResult:
    params, pipeline = fitted
    raw, features = training_rows
    ids = np.array([2, 0, 3, 1])
    return gates.export_model(standin_features(), pipeline, in_memory(raw, features), params, ids)


def test_exported_graph_takes_the_staged_columns_and_returns_the_contract_outputs(exported):
    graph = exported.model.graph
    assert [i.name for i in graph.input] == list(FIELD_NAMES)
    assert {i.type.tensor_type.elem_type for i in graph.input} == {TensorProto.DOUBLE}
    outputs = {o.name: o.type.tensor_type.elem_type for o in graph.output}
    assert outputs == {
        "segment_id": TensorProto.INT64,
        "distances": TensorProto.FLOAT,
        "features": TensorProto.FLOAT,
    }
    props = {p.key: p.value for p in exported.model.metadata_props}
    assert props["feature_sql_sha256"] == "0" * 64
    assert not any(t.data_location == TensorProto.EXTERNAL for t in graph.initializer)


def test_exported_segment_ids_are_the_baked_stable_ids(exported, fitted, training_rows):
    _, pipeline = fitted
    expected = np.array([2, 0, 3, 1])[pipeline.predict(training_rows[1])]
    assert set(np.unique(exported.outputs["segment_id"])) == {0, 1, 2, 3}
    assert exported.agreement.share >= 0.999
    assert np.mean(exported.outputs["segment_id"] == expected) >= 0.999


@pytest.mark.parametrize("broken", ["log_balance", "purchases_frequency"])
def test_a_feature_whose_sql_differs_from_duckdb_fails_the_parity_gate(
    broken, training_rows, fitted
):
    params, pipeline = fitted
    raw, features = training_rows
    with pytest.raises(GateFailed, match=f"feature parity: .*'{broken}' on 8950 of 8950 rows"):
        gates.export_model(standin_features(broken), pipeline, in_memory(raw, features), params)


def test_feature_parity_requires_nan_exactly_where_duckdb_has_null():
    expected = np.array([[1.0, np.nan], [2.0, 3.0]])
    got = np.array([[1.0, 0.0], [2.0, 3.0]])
    with pytest.raises(GateFailed, match="'b' on 1 of 2 rows"):
        parity.check_feature_parity(got, expected, ("a", "b"), 1e-5)
    result = parity.check_feature_parity(expected.copy(), expected, ("a", "b"), 1e-5)
    assert result.mismatches == {"a": 0, "b": 0}


@pytest.mark.parametrize(("relative_error", "passes"), [(5e-6, True), (5e-5, False)])
def test_feature_parity_tolerates_relative_error_up_to_the_rtol(relative_error, passes):
    expected = np.array([[1234.5], [0.001]])
    got = expected * (1 + relative_error)
    if passes:
        parity.check_feature_parity(got, expected, ("x",), 1e-5)
    else:
        with pytest.raises(GateFailed, match="'x' on 2 of 2 rows"):
            parity.check_feature_parity(got, expected, ("x",), 1e-5)


def numpy_standin_features(inputs: list[dict]) -> np.ndarray:
    """The stand-in features in numpy (NULL as NaN), column for column with STANDIN."""
    col = {n: np.array([np.nan if r[n] is None else r[n] for r in inputs]) for n in FIELD_NAMES}
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.column_stack(
            [
                col["balance"] / col["credit_limit"],
                col["purchases_trx"] / col["tenure"],
                np.log1p(col["balance"]),
                np.log1p(col["purchases"]),
                np.log1p(col["cash_advance"]),
                np.log1p(col["minimum_payments"]),
                col["purchases_frequency"],
                col["cash_advance_frequency"],
            ]
        )


def test_golden_rows_cover_the_edge_cases(exported):
    rows = {r["name"]: r for r in exported.golden_rows}
    assert {"zero purchases", "missing minimum payments", "balance over limit"} <= set(rows)
    assert sum(name.startswith("typical of segment") for name in rows) == 4
    assert rows["zero purchases"]["inputs"]["purchases_trx"] == 0.0
    assert rows["missing minimum payments"]["inputs"]["minimum_payments"] is None
    over = rows["balance over limit"]["inputs"]
    assert over["balance"] > over["credit_limit"]


def test_golden_rows_record_what_numpy_and_scikit_learn_compute_from_their_inputs(exported, fitted):
    _, pipeline = fitted
    rows = exported.golden_rows
    X = numpy_standin_features([r["inputs"] for r in rows])
    recorded = np.array([[np.nan if f is None else f for f in r["features"]] for r in rows])
    # The graph's features are float32: equal to numpy's within float32 rounding.
    np.testing.assert_allclose(recorded, X, rtol=1e-6, atol=1e-6, equal_nan=True)
    embedding = pipeline[:-1].transform(X)
    distances = np.linalg.norm(embedding[:, None, :] - pipeline[-1].cluster_centers_[None], axis=2)
    np.testing.assert_allclose([r["distances"] for r in rows], distances, rtol=1e-4, atol=1e-4)
    stable_ids = np.array([2, 0, 3, 1])
    assert [r["segment_id"] for r in rows] == stable_ids[pipeline.predict(X)].tolist()


def test_isolated_run_reproduces_the_recorded_golden_rows(exported):
    rows = [r["inputs"] for r in exported.golden_rows]
    outs = isolated.run_isolated(exported.model.SerializeToString(), rows)
    assert outs["segment_id"].tolist() == [r["segment_id"] for r in exported.golden_rows]
    np.testing.assert_allclose(
        outs["distances"], [r["distances"] for r in exported.golden_rows], rtol=1e-6
    )


def test_isolated_run_fails_the_gate_when_the_graph_cannot_load():
    with pytest.raises(GateFailed, match="isolated run: the graph must run"):
        isolated.run_isolated(b"not an onnx graph", [{n: 1.0 for n in FIELD_NAMES}])


@pytest.mark.parametrize("module", ["yaml", "requests"])
def test_isolated_run_fails_the_gate_when_the_process_imports_anything_else(
    exported, monkeypatch, module
):
    """A serving process that also imports a third-party module (installed, not refused)."""
    script = isolated._ISOLATED_SCRIPT.replace(
        "import numpy as np\n", f"import numpy as np\nimport {module}\n", 1
    )
    assert script != isolated._ISOLATED_SCRIPT
    monkeypatch.setattr(isolated, "_ISOLATED_SCRIPT", script)
    rows = [r["inputs"] for r in exported.golden_rows]
    with pytest.raises(GateFailed, match=rf"expected only onnxruntime \+ numpy, .*'{module}'"):
        isolated.run_isolated(exported.model.SerializeToString(), rows)


@pytest.mark.parametrize("module", ["sklearn", "duckdb", "segmentation"])
def test_isolated_run_refuses_the_training_stack(exported, monkeypatch, module):
    script = isolated._ISOLATED_SCRIPT.replace(
        "import numpy as np\n", f"import numpy as np\nimport {module}\n", 1
    )
    monkeypatch.setattr(isolated, "_ISOLATED_SCRIPT", script)
    rows = [r["inputs"] for r in exported.golden_rows]
    with pytest.raises(GateFailed, match=f"{module} is not available in the serving process"):
        isolated.run_isolated(exported.model.SerializeToString(), rows)


def test_segment_gate_fails_when_ids_differ_on_rows_with_a_clear_margin():
    distances = np.array([[0.0, 5.0], [1.0, 1.0000001], [0.0, 5.0]])
    agreement = parity.label_agreement(np.array([0, 1, 1]), np.array([0, 0, 0]), distances, 1e-3)
    assert (agreement.disagreements, agreement.clear_disagreements) == (2, 1)
    with pytest.raises(GateFailed, match="2 of 3 rows differ, 1 with a clear margin"):
        parity.check_agreement("test", agreement, 0.5)


def test_segment_gate_tolerates_a_tie_flip_below_the_margin_epsilon():
    distances = np.array([[1.0, 1.0000001]] + [[0.0, 5.0]] * 999)
    labels = np.zeros(1000, dtype=np.int64)
    flipped = labels.copy()
    flipped[0] = 1
    agreement = parity.label_agreement(flipped, labels, distances, 1e-3)
    parity.check_agreement("test", agreement, 0.999)
    assert agreement.share == pytest.approx(0.999)


#: A small feature SELECT for the compiled-graph join (DuckDB semantics via the compiler).
JOIN_SQL = """
select customer_id,
       ln(1 + balance) as log_balance,
       case when purchases_trx > 0 then purchases / purchases_trx else 0.0 end as ticket,
       purchases_frequency,
       cash_advance_frequency,
       ln(1 + minimum_payments) as log_minimum_payments
from staged
"""


@pytest.mark.parametrize(
    "clustered", [("log_minimum_payments", "purchases_frequency"), None], ids=["select", "all"]
)
def test_compiled_features_feed_the_pipeline_their_float32_columns_directly(
    training_rows, clustered
):
    from training.features.sql_onnx import compile_features, evaluate

    compiled = compile_features(JOIN_SQL, FIELD_NAMES)
    raw = training_rows[0]
    X = evaluate(compiled, raw)
    params = TrainingParams(k=3, seed=7, cluster_features=clustered)
    pipeline = build_pipeline(params, compiled.feature_names).fit(X)
    folded = fold.folded_graph(pipeline, np.array([5, 6, 7]))
    fast = join.join_graphs(compiled, folded)
    # The same graph joined generically (a feature graph that cannot be re-emitted).
    plain = StandInFeatures(compiled.model, compiled.feature_names, compiled.sql_sha256)
    generic = join.join_graphs(plain, folded)
    gathers = lambda m: sum(n.op_type == "Gather" for n in m.graph.node)  # noqa: E731
    by_column = lambda m: sum(  # noqa: E731
        n.op_type == "Gather" and any(a.name == "axis" and a.i == 1 for a in n.attribute)
        for n in m.graph.node
    )
    # The fast join picks the clustered rows of the feature-major stack (axis 0), never the
    # row-major [N, F] columns (axis 1) the generic join has to gather.
    assert by_column(fast) == 0
    assert gathers(fast) == (2 if clustered else 1)
    assert gathers(generic) == (2 if clustered else 1)
    got, want = parity.run(fast, join.raw_feeds(raw)), parity.run(generic, join.raw_feeds(raw))
    for name in ("segment_id", "distances", "features"):
        np.testing.assert_array_equal(got[name], want[name])
    assert got["features"].dtype == np.float32
    np.testing.assert_array_equal(got["features"], X.astype(np.float32))
    sk_ids, _ = parity.sklearn_segments(pipeline, X, np.array([5, 6, 7]))
    assert np.mean(got["segment_id"] == sk_ids) >= 0.999


def test_a_pipeline_that_does_not_cast_its_input_gets_doubles_through_an_adapter():
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", [fold.PIPELINE_INPUT], ["total"], keepdims=0)],
        "other",
        [helper.make_tensor_value_info(fold.PIPELINE_INPUT, TensorProto.DOUBLE, ["N", 3])],
        [helper.make_tensor_value_info("total", TensorProto.DOUBLE, [])],
    )
    columns, name = join._read_float(graph, drop_gather=True)
    assert columns is None
    assert graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    first = graph.node[0]
    assert (first.op_type, list(first.input), list(first.output)) == (
        "Cast",
        [name],
        [fold.PIPELINE_INPUT],
    )
