"""Every supported construct gives DuckDB's result, on a table of edge values."""

from __future__ import annotations

import itertools
import math

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from training.features.sql_onnx import compile_features, evaluate

INF = math.inf
#: Doubles: zeros, signs, halves (rounding), huge (overflow), tiny, subnormal, inf, NULL.
DOUBLES = [0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 0.5, 7.25, 1e308, -1e308, 1e-308, 5e-324, INF]
DOUBLES += [-INF, None, 3.0]
#: Integers small enough that products stay INTEGER (DuckDB raises on overflow).
INTEGERS = [-7, -3, -1, 0, 1, 2, 3, 7, None, 46340]
TYPES = {"a": "double", "b": "double", "i": "integer", "j": "integer"}


def _edge_table() -> dict[str, list]:
    pairs = list(itertools.product(DOUBLES, DOUBLES))
    int_pairs = list(itertools.product(INTEGERS, INTEGERS))
    rows = [(*p, *int_pairs[k % len(int_pairs)]) for k, p in enumerate(pairs)]
    return dict(zip(("a", "b", "i", "j"), map(list, zip(*rows, strict=True)), strict=True))


EDGE = _edge_table()


@pytest.fixture(scope="module")
def duck() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    arrays = {"id": pa.array(range(len(EDGE["a"])), pa.int32())}
    for name, values in EDGE.items():
        arrays[name] = pa.array(values, pa.float64() if TYPES[name] == "double" else pa.int32())
    con.register("edge_arrow", pa.table(arrays))
    con.execute("create table edge as select * from edge_arrow")
    return con


def duckdb_values(con: duckdb.DuckDBPyConnection, sql: str, width: int) -> np.ndarray:
    """DuckDB's result in the graph's encoding: NULL as NaN, booleans as 1/0."""
    rows = con.execute(f"select * exclude (id) from ({sql}) q order by id").fetchall()
    to_float = [[math.nan if v is None else float(v) for v in row] for row in rows]
    return np.array(to_float, dtype=np.float64).reshape(len(rows), width)


def onnx_values(sql: str) -> np.ndarray:
    compiled = compile_features(sql, list(TYPES), id_column="id", input_types=TYPES)
    columns = {k: np.array([math.nan if v is None else v for v in vs]) for k, vs in EDGE.items()}
    return evaluate(compiled, columns)


def assert_same(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-12) -> None:
    """Equal NaN positions, equal infinities, other values within ``rtol``."""
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=0, equal_nan=True)


ARITHMETIC = [
    "a + b",
    "a - b",
    "a * b",
    "a / b",
    "-a",
    "i + j",
    "i * j - 3",
    "i / j",
    "try(i // j)",
    "try(a // b)",
    "a % b",
    "try(i % j)",
    "i * 2.5",
    "a + 1.5",
    "a * 1e3",
    "1 / 0",
    "1.0 / 0.0",
    "0.0 / 0.0",
    "-1 / 0",
    "0.1 + 0.2 - 0.3",
    "(0.1 + 0.2 - 0.3) * a",
    "7 // 2",
    "-7 // 2",
    "-7 % 3",
    "7.5 % 2",
]
FUNCTIONS = [
    "ln(a)",
    "ln(1 + a)",
    "log(a)",
    "log10(a)",
    "log2(a)",
    "log(2, a)",
    "exp(a)",
    "sqrt(a)",
    "abs(a)",
    "abs(i)",
    "sign(a)",
    "power(a, b)",
    "pow(a, 2)",
    "a ** 0.5",
    "a ^ 3",
    "power(a, 0)",
    "power(1, b)",
    "power(i, j)",
    "floor(a)",
    "ceil(a)",
    "round(a)",
    "round(a, 1)",
    "floor(i)",
]
NULL_HANDLING = [
    "nullif(a, 0)",
    "nullif(a, b)",
    "nullif(a, 2.5)",
    "nullif(a, -1)",
    "nullif(a, 'inf'::double)",
    "nullif(a, null)",
    "nullif(i, 0)",
    "try_cast(a as float) / nullif(try_cast(b as float), 0.1)",
    "nullif(i, 1.0)",
    "coalesce(a, b)",
    "coalesce(a, b, 0)",
    "coalesce(i, a)",
    "ifnull(a, -1)",
    "coalesce(null, a)",
    "greatest(a, b)",
    "least(a, b)",
    "greatest(a, 1)",
    "least(a, 5.0)",
    "least(a, b, 0)",
    "greatest(a, null, b)",
    "greatest(i, j)",
    "least(null, null)",
    "greatest(i, 2.5)",
]
CONDITIONS = [
    "case when a > b then a else b end",
    "case when a > 0 then 1 when a < 0 then -1 end",
    "case i when 1 then 10 when 2 then 20 else 0 end",
    "case a when b then 1 else 0 end",
    "case when a is null then 0 else a end",
    "case when a > b then 1.5 else i end",
    "case when null then 1 else 2 end",
    "if(a > b, 1, 0)",
    "a = b",
    "a <> b",
    "a != b",
    "a < b",
    "a <= b",
    "a > b",
    "a >= b",
    "i = 2.5",
    "(a > 0) and (b > 0)",
    "(a > 0) or (b > 0)",
    "not (a > b)",
    "(a > 0) and b is null",
    "a is null",
    "a is not null",
    "(a > b) is null",
    "not (a is null or b > 1)",
    "a between b and 1",
    "a not between 0 and 1",
    "a in (0, 1, b)",
    "i in (1, 2, null)",
    "a not in (0, 1)",
    "a is distinct from b",
    "a is not distinct from b",
    "cast(a > b as double)",
    "(a > b) = (i > j)",
    "case when a > b then a > 0 else b > 0 end",
    "true and a > 0",
    "null or a > 0",
]
CASTS = [
    "try_cast(a as integer)",
    "try_cast(a as bigint)",
    "try_cast(a as smallint)",
    "try_cast(a as utinyint)",
    "try_cast(a as float)",
    "try_cast(a as decimal(10, 2))",
    "try_cast(a as decimal(4, 1))",
    "try_cast(a as decimal)",
    "try_cast(i as decimal(3, 1))",
    "cast(i as double) / 2",
    "a::double",
    "cast(2.5 as integer)",
    "cast(-2.5 as integer)",
    "cast(2.5::double as integer)",
    "cast(3.5::double as bigint)",
    "try_cast(2147483647.5::double as integer)",
    "cast(0.125::double as decimal(10, 2))",
    "cast(2.675 as decimal(10, 2))",
    "try_cast(a * 10 as integer)",
    "cast(a > b as integer)",
    "cast(i as boolean)",
    "try_cast(a as float) * try_cast(b as float)",
    "try_cast(a as float) + 0.1",
    "cast(i as float) / 3",
    "'inf'::double + a",
    "-'inf'::double",
]


@pytest.mark.parametrize("expression", ARITHMETIC + FUNCTIONS + NULL_HANDLING + CONDITIONS + CASTS)
def test_expression_matches_duckdb_on_edge_values(duck, expression):
    sql = f"select id, {expression} as y from edge"
    assert_same(onnx_values(sql), duckdb_values(duck, sql, 1))


@pytest.mark.parametrize(
    ("raising", "trying"),
    [
        ("i // j", "try(i // j)"),
        ("i % j", "try(i % j)"),
        ("a // b", "try(a // b)"),
        ("cast(a as integer)", "try_cast(a as integer)"),
        ("cast(a as decimal(4, 1))", "try_cast(a as decimal(4, 1))"),
        ("cast(a as float) * 2", "try_cast(a as float) * 2"),
    ],
)
def test_rows_duckdb_refuses_become_null_like_try(duck, raising, trying):
    with pytest.raises(duckdb.Error):
        duck.execute(f"select {raising} from edge").fetchall()
    expected = duckdb_values(duck, f"select id, {trying} as y from edge", 1)
    assert_same(onnx_values(f"select id, {raising} as y from edge"), expected)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1.0 / 0.0", math.inf),
        ("0.0 / 0.0", math.nan),
        ("ln(0.0)", -math.inf),
        ("ln(-1.0)", math.nan),
        ("sqrt(-1.0)", math.nan),
        ("-1 / 0", -math.inf),
        ("cast(2.5::double as integer)", 2.0),
        ("cast(2.5 as integer)", 3.0),
        ("least(null, 5.0)", 5.0),
    ],
)
def test_ieee_and_rounding_results_are_the_documented_ones(duck, expression, expected):
    sql = f"select id, {expression} as y from edge"
    got = onnx_values(sql)[0, 0]
    reference = duckdb_values(duck, sql, 1)[0, 0]
    for value in (got, reference):
        assert value == expected or (math.isnan(value) and math.isnan(expected))


def test_several_features_come_out_in_select_order(duck):
    sql = "select id, a + 1 as first, i * 2 as second, b as third, 4.5 as fourth from edge"
    assert_same(onnx_values(sql), duckdb_values(duck, sql, 4))
