"""Compiling for a declared input domain: fewer Where nodes, DuckDB's results within it."""

from __future__ import annotations

import collections
import math

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import test_sql_onnx_property as property_tests
from hypothesis import HealthCheck, given, settings

from segmentation import FIELD_NAMES
from training.features.sql_onnx import compile_features, evaluate, staged_ranges

#: x: NOT NULL within [0, 100]; y: nullable within [0, 50]; z: no declared domain.
RANGES = {"x": (0.0, 100.0, False), "y": (0.0, 50.0, True)}
TYPES = {"x": "double", "y": "double", "z": "double"}


def _domain_rows(n: int = 600) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 100, n)
    y = rng.uniform(0, 50, n)
    x[:6] = [0.0, 1.0, 100.0, 0.5, 5.0, 1.0]  # boundaries and the GREATEST/LEAST constants
    y[:6] = [0.0, 1.0, 50.0, 0.5, np.nan, np.nan]
    y[rng.random(n) < 0.1] = np.nan
    z = rng.uniform(-5, 5, n)
    z[rng.random(n) < 0.2] = np.nan
    return {"x": x, "y": y, "z": z}


ROWS = _domain_rows()


@pytest.fixture(scope="module")
def duck() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    arrays = {"id": pa.array(range(len(ROWS["x"])), pa.int32())}
    for name, values in ROWS.items():
        arrays[name] = pa.array(values, pa.float64(), mask=np.isnan(values))
    con.register("t", pa.table(arrays))
    return con


def _compile(expr: str, ranges=RANGES):
    sql = f"select id, {expr} as f from t"
    return compile_features(
        sql, list(TYPES), id_column="id", input_types=TYPES, input_ranges=ranges
    )


def _wheres(compiled) -> int:
    return collections.Counter(n.op_type for n in compiled.model.graph.node)["Where"]


@pytest.mark.parametrize(
    ("expr", "wheres"),
    [
        ("greatest(x, 1.0)", 0),
        ("least(x, 5.0) + greatest(1.0, x)", 0),
        ("greatest(y, 1.0)", 1),  # y may be NULL: GREATEST ignores it, Max would not
        ("least(x / greatest(y, 1.0), 5.0)", 2),
        ("case when y is null then null else least(x / greatest(y, 1.0), 5.0) end", 0),
        ("case when y is null then null else 0.5 * least(x / greatest(y, 1.0), 1.0) + x end", 0),
        ("case when y is null then null else ln(1 + y) end", 0),
        ("case when y is null then null else coalesce(z, 2.0) end", 2),  # not strict in y
        ("case when y is null then 0.0 else y end", 1),
        ("least(x, z)", 1),
        ("greatest(z, 1.0)", 1),  # no declared domain: NULL possible
        ("case when x > 0 then y / x else 0.0 end", 1),
    ],
)
def test_within_the_domain_results_are_duckdbs_with_fewer_where_nodes(duck, expr, wheres):
    compiled = _compile(expr)
    got = evaluate(compiled, ROWS)[:, 0]
    rows = duck.execute(f"select {expr} from t order by id").fetchall()
    want = np.array([math.nan if r[0] is None else r[0] for r in rows], dtype=np.float64)
    exact = _compile(expr, ranges=None)
    np.testing.assert_array_equal(got, evaluate(exact, ROWS)[:, 0])  # bit for bit
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0, equal_nan=True)  # LN's last ulp
    assert _wheres(compiled) == wheres
    assert _wheres(exact) >= wheres


@pytest.mark.parametrize(
    ("expr", "row", "duckdb_says"),
    [("greatest(x, 1.0)", {"x": math.nan}, 1.0), ("least(x, 5.0)", {"x": math.nan}, 5.0)],
)
def test_outside_the_domain_results_are_unspecified(expr, row, duckdb_says):
    columns = {n: np.array([row.get(n, 1.0)]) for n in TYPES}
    exact = evaluate(_compile(expr, ranges=None), columns)[0, 0]
    for_domain = evaluate(_compile(expr), columns)[0, 0]
    assert exact == duckdb_says
    assert math.isnan(for_domain)  # NULL in a NOT NULL column: outside the domain


def test_staged_ranges_are_the_schema_bounds_and_nullability():
    ranges = staged_ranges([*FIELD_NAMES, "not_a_field"])
    assert set(ranges) == set(FIELD_NAMES)
    assert ranges["minimum_payments"][2] is True and ranges["balance"][2] is False
    assert all(low <= high for low, high, _ in ranges.values())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expression=property_tests.EXPRESSIONS)
def test_random_expressions_compiled_for_their_rows_domain_are_unchanged_on_those_rows(
    expression,
):
    types = property_tests.TYPES
    # Columns a and i without NULLs (declared NOT NULL below), b and c with them.
    table = {n: np.nan_to_num(v) if n in ("a", "i") else v for n, v in property_tests.TABLE.items()}
    domain = {
        name: (float(np.nanmin(v)), float(np.nanmax(v)), bool(np.isnan(v).any()))
        for name, v in table.items()
    }
    sql = f"select id, {expression} as y from rows"
    exact = compile_features(sql, list(types), id_column="id", input_types=types)
    narrowed = compile_features(
        sql, list(types), id_column="id", input_types=types, input_ranges=domain
    )
    np.testing.assert_array_equal(evaluate(narrowed, table), evaluate(exact, table), err_msg=sql)
