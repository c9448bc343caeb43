"""A dbt-style CTE chain compiles to one lean graph that reproduces DuckDB on real customers."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import onnx
import pytest

from segmentation.schema import FIELD_NAMES, FIELDS
from training.features.sql_onnx import compile_features, evaluate

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cc_general.csv"

#: Shaped like dbt's compiled `customer_features`: import CTE, one-job CTEs, final select.
FEATURE_SQL = """
with staged as (select * from "warehouse"."main"."stg_customers"),
ratios as (
    select
        customer_id,
        balance / nullif(credit_limit, 0) as credit_utilization_ratio,
        purchases_trx / tenure as purchases_per_month,
        case when purchases_trx = 0 then 0 else purchases / purchases_trx end as average_ticket,
        oneoff_purchases / nullif(purchases, 0) as oneoff_purchase_share,
        installments_purchases / nullif(purchases, 0) as installment_purchase_share,
        cash_advance / nullif(cash_advance + purchases, 0) as cash_advance_ratio,
        cash_advance_trx / tenure as cash_advance_intensity,
        payments / nullif(minimum_payments, 0) as payment_to_minimum_ratio,
        prc_full_payment as full_payment_share,
        balance, purchases, credit_limit, payments, minimum_payments, tenure
    from staged
),
final as (
    select
        customer_id,
        least(credit_utilization_ratio, 5.0) as credit_utilization_ratio,
        purchases_per_month,
        average_ticket,
        coalesce(oneoff_purchase_share, 0) as oneoff_purchase_share,
        coalesce(installment_purchase_share, 0) as installment_purchase_share,
        coalesce(cash_advance_ratio, 0) as cash_advance_ratio,
        cash_advance_intensity,
        payment_to_minimum_ratio,
        full_payment_share,
        0.5 * least(coalesce(payment_to_minimum_ratio, 1), 1.0)
            + 0.5 * full_payment_share as payment_consistency_index,
        ln(1 + balance) as log_balance,
        ln(1 + purchases) as log_purchases,
        ln(1 + credit_limit) as log_credit_limit,
        ln(1 + payments) as log_payments,
        ln(1 + minimum_payments) as log_minimum_payments,
        cast(tenure as double) as tenure
    from ratios
)
select * from final
"""
NAMES = (
    "credit_utilization_ratio",
    "purchases_per_month",
    "average_ticket",
    "oneoff_purchase_share",
    "installment_purchase_share",
    "cash_advance_ratio",
    "cash_advance_intensity",
    "payment_to_minimum_ratio",
    "full_payment_share",
    "payment_consistency_index",
    "log_balance",
    "log_purchases",
    "log_credit_limit",
    "log_payments",
    "log_minimum_payments",
    "tenure",
)


@pytest.fixture(scope="module")
def compiled():
    return compile_features(FEATURE_SQL, FIELD_NAMES)


@pytest.fixture(scope="module")
def staged() -> duckdb.DuckDBPyConnection:
    """The real customers staged as dbt does (names, types), in a `warehouse` catalog."""
    con = duckdb.connect()
    con.execute("attach ':memory:' as warehouse")
    casts = ", ".join(f"cast({f.raw_name} as {f.sql_type}) as {f.name}" for f in FIELDS)
    con.execute(
        f"create table warehouse.main.stg_customers as select CUST_ID as customer_id, {casts} "
        f"from read_csv('{DATA}', header = true)"
    )
    return con


def _columns(con: duckdb.DuckDBPyConnection) -> dict[str, np.ndarray]:
    table = con.execute("select * from warehouse.main.stg_customers order by customer_id")
    data = table.fetchnumpy()
    return {n: np.ma.filled(np.ma.asarray(data[n], dtype=np.float64), np.nan) for n in FIELD_NAMES}


def test_feature_names_are_the_final_columns_in_order_without_the_id(compiled):
    assert compiled.feature_names == NAMES


def test_graph_signature_is_named_double_columns_to_features_matrix(compiled):
    graph = compiled.model.graph
    assert [i.name for i in graph.input] == list(FIELD_NAMES)
    for value in graph.input:
        assert value.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
        assert len(value.type.tensor_type.shape.dim) == 1
    (out,) = graph.output
    assert out.name == "features"
    assert out.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert out.type.tensor_type.shape.dim[1].dim_value == len(NAMES)
    assert {p.key: p.value for p in compiled.model.metadata_props} == {
        "feature_sql_sha256": compiled.sql_sha256
    }
    assert compiled.model.opset_import[0].version == 17


def test_features_equal_duckdb_on_every_real_customer(compiled, staged):
    expected = staged.execute(
        f"select * exclude (customer_id) from ({FEATURE_SQL}) order by customer_id"
    ).fetchnumpy()
    reference = np.column_stack(
        [np.ma.filled(np.ma.asarray(expected[n], dtype=np.float64), np.nan) for n in NAMES]
    )
    got = evaluate(compiled, _columns(staged), threads=2)
    assert got.shape == (8950, len(NAMES))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(reference))
    np.testing.assert_allclose(got, reference, rtol=1e-12, atol=0, equal_nan=True)
    # The real data exercises the NULL paths: missing minimum payments and credit limit.
    assert np.isnan(got[:, NAMES.index("payment_to_minimum_ratio")]).sum() == 313
    assert np.isnan(got[:, NAMES.index("credit_utilization_ratio")]).sum() == 0


def test_shared_subexpressions_are_computed_once(compiled):
    ops = [n.op_type for n in compiled.model.graph.node]
    # `nullif(purchases, 0)` feeds two shares and ln(1 + x) appears once per money column.
    assert ops.count("Log") == 5
    # NULLIF(y, 0) is y / |sign(y)|: one Sign per distinct divisor (credit_limit, purchases,
    # cash_advance + purchases, minimum_payments), however many features divide by it.
    assert ops.count("Sign") == 4
    assert ops.count("Div") == 8 + 4
    assert ops.count("Equal") == 1  # purchases_trx = 0
    assert ops.count("Concat") == 1


@pytest.mark.parametrize(
    "variant",
    [
        FEATURE_SQL.replace("\n", "\n\n   "),
        "-- compiled by dbt\n"
        + FEATURE_SQL.replace("select", "SELECT").replace(" from ", " FROM ").replace("as ", "AS "),
    ],
)
def test_sql_hash_ignores_layout_comments_and_keyword_case(compiled, variant):
    assert compile_features(variant, FIELD_NAMES).sql_sha256 == compiled.sql_sha256


def test_sql_hash_changes_when_a_feature_changes(compiled):
    changed = FEATURE_SQL.replace(
        "least(credit_utilization_ratio, 5.0)", "least(credit_utilization_ratio, 4.0)"
    )
    assert compile_features(changed, FIELD_NAMES).sql_sha256 != compiled.sql_sha256


@pytest.mark.parametrize("rows", [0, 1, 3])
def test_constant_and_pass_through_features_have_one_value_per_row(rows):
    sql = "select customer_id, 2.5 as constant, balance, balance as again from stg_customers"
    compiled = compile_features(sql, ["balance"])
    got = evaluate(compiled, {"balance": np.arange(rows, dtype=np.float64)})
    assert got.shape == (rows, 3)
    np.testing.assert_array_equal(got[:, 0], np.full(rows, 2.5))
    np.testing.assert_array_equal(got[:, 1], got[:, 2])


@pytest.mark.parametrize(
    "sql",
    [
        "select s.balance * 2 as doubled, doubled + 1 as next from stg_customers as s",
        "with s as (select * exclude (purchases) from stg_customers) "
        "select balance * 2 as doubled, doubled + 1 as next from s",
        "with s as (select balance * 2 as doubled from stg_customers), "
        "t as (select doubled, doubled + 1 as next from s) select t.* from t",
        "with s as (select balance * 2 as doubled, balance as doubled from stg_customers) "
        "select doubled, doubled_1 * 3 as next from s",
    ],
)
def test_aliases_qualified_columns_and_star_resolve_like_duckdb(sql):
    compiled = compile_features(sql, ["balance", "purchases"])
    got = evaluate(compiled, {"balance": np.array([1.0, np.nan]), "purchases": np.zeros(2)})
    np.testing.assert_array_equal(got, [[2.0, 3.0], [np.nan, np.nan]])
    con = duckdb.connect()
    con.execute("create table stg_customers as select 1.0::double as balance, 0.0 as purchases")
    con.execute("insert into stg_customers values (null, 0.0)")
    assert con.execute(sql).fetchall() == [(2.0, 3.0), (None, None)]


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_requested_opset_is_used_and_runs(opset):
    compiled = compile_features("select ln(1 + x) as y from t", ["x"], opset=opset)
    assert compiled.model.opset_import[0].version == opset
    assert evaluate(compiled, {"x": np.array([math.e - 1])})[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("unguarded", "guarded", "divergent_rows"),
    [
        # x / y is 0/0 = NaN in DuckDB where both are 0; NULLIF makes it NULL in both.
        ("coalesce(x / y, -1)", "coalesce(x / nullif(y, 0), -1)", [0]),
        ("(x / y) is null", "(x / nullif(y, 0)) is null", [0]),
        ("greatest(x / y, 0.5)", "greatest(x / nullif(y, 0), 0.5)", [0]),
        (
            "case when x / y > 1 then 1 else 0 end",
            "case when x / nullif(y, 0) > 1 then 1 else 0 end",
            [0],
        ),
    ],
)
def test_null_and_nan_differ_only_for_arithmetic_nan_and_guards_remove_it(
    unguarded, guarded, divergent_rows
):
    """The graph reads NaN as NULL: only NaN made by 0/0 inside such constructs differs."""
    x = [0.0, 1.0, 3.0, None, 0.0]
    y = [0.0, 2.0, 1.0, 1.0, None]
    con = duckdb.connect()
    con.execute("create table t (id integer, x double, y double)")
    con.executemany(
        "insert into t values (?, ?, ?)",
        [(i, a, b) for i, (a, b) in enumerate(zip(x, y, strict=True))],
    )
    columns = {
        k: np.array([np.nan if v is None else v for v in vs]) for k, vs in (("x", x), ("y", y))
    }
    results = {}
    for sql_expr in (unguarded, guarded):
        sql = f"select id, {sql_expr} as f from t"
        duck = [r[0] for r in con.execute(f"select f from ({sql}) order by id").fetchall()]
        duck = np.array([np.nan if v is None else float(v) for v in duck])
        graph = evaluate(compile_features(sql, ["x", "y"], id_column="id"), columns)[:, 0]
        results[sql_expr] = (duck, graph)
    duck, graph = results[unguarded]
    same = (duck == graph) | (np.isnan(duck) & np.isnan(graph))
    assert np.flatnonzero(~same).tolist() == divergent_rows
    duck, graph = results[guarded]
    np.testing.assert_array_equal(duck, graph)


def test_columns_output_holds_the_same_features_column_major(compiled):
    both = compile_features(FEATURE_SQL, FIELD_NAMES, columns_output="features_by_column")
    assert [o.name for o in both.model.graph.output] == ["features", "features_by_column"]
    import onnxruntime as ort

    session = ort.InferenceSession(
        both.model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(1)
    columns = {n: rng.uniform(0, 50, 64).round() for n in FIELD_NAMES}
    columns["minimum_payments"][::5] = np.nan
    rows, by_column = session.run(None, columns)
    np.testing.assert_array_equal(rows, by_column.T)
    np.testing.assert_array_equal(rows, evaluate(compiled, columns))


@pytest.mark.parametrize("columns", [None, [12, 0, 9], [3]])
def test_float_model_rounds_features_to_float32_and_outputs_the_chosen_columns(compiled, columns):
    import onnxruntime as ort

    model = compiled.float_model("clustering", columns)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    feeds = {n: rng.uniform(0, 5000, 256).round(2) for n in FIELD_NAMES}
    feeds["minimum_payments"][::7] = np.nan
    feeds["credit_limit"][::11] = np.nan
    features, clustering = session.run(["features", "clustering"], feeds)
    expected = evaluate(compiled, feeds).astype(np.float32)
    assert features.dtype == np.float32 and clustering.dtype == np.float32
    np.testing.assert_array_equal(features, expected)
    picked = list(range(len(NAMES))) if columns is None else columns
    np.testing.assert_array_equal(clustering, expected[:, picked])


@pytest.mark.parametrize(
    ("name", "columns", "message"),
    [("features", None, "must differ"), ("balance", None, "must differ"), ("c", [99], "index")],
)
def test_float_model_refuses_clashing_names_and_unknown_columns(compiled, name, columns, message):
    with pytest.raises(ValueError, match=message):
        compiled.float_model(name, columns)
