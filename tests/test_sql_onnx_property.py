"""Random expressions of the guarded subset give DuckDB's results on random rows with NULLs.

Expressions are built the way feature SQL is written: divisors through NULLIF, LN/SQRT/POWER
on non-negative arguments, EXP capped, so no NaN is made by arithmetic (see the package
docstring: that is the one place NULL and NaN differ).
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training.features.sql_onnx import compile_features, evaluate

ROWS = 200
TYPES = {"a": "double", "b": "double", "c": "double", "i": "bigint"}


def _table() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    out = {}
    for name, kind in TYPES.items():
        if kind == "bigint":
            values = rng.integers(-20, 21, ROWS).astype(np.float64)
        else:  # money-like, small, exactly halves (rounding ties) and zeros
            values = np.concatenate(
                [
                    rng.lognormal(3, 2, ROWS // 4),
                    rng.uniform(-2, 2, ROWS // 4),
                    rng.integers(-6, 7, ROWS // 4) / 2,
                    np.zeros(ROWS - 3 * (ROWS // 4)),
                ]
            )
            rng.shuffle(values)
        values[rng.random(ROWS) < 0.15] = np.nan
        out[name] = values
    return out


TABLE = _table()


@pytest.fixture(scope="module")
def duck() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    arrays = {"id": pa.array(np.arange(ROWS, dtype=np.int32))}
    for name, values in TABLE.items():
        typed = pa.int64() if TYPES[name] == "bigint" else pa.float64()
        arrays[name] = pa.array(values, mask=np.isnan(values)).cast(typed)
    con.register("rows_arrow", pa.table(arrays))
    con.execute("create table rows as select * from rows_arrow")
    return con


LITERALS = st.sampled_from(["0", "1", "2", "-3", "0.5", "1.25", "-2.5", "1e2", "null"])
COLUMNS = st.sampled_from(list(TYPES))


def _numeric(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    two = st.tuples(children, children)
    conditions = _conditions(children)
    return st.one_of(
        two.map(lambda p: f"({p[0]} + {p[1]})"),
        two.map(lambda p: f"({p[0]} - {p[1]})"),
        two.map(lambda p: f"({p[0]} * {p[1]})"),
        two.map(lambda p: f"({p[0]} / nullif({p[1]}, 0))"),
        two.map(lambda p: f"({p[0]} // nullif({p[1]}, 0))"),
        two.map(lambda p: f"({p[0]} % nullif({p[1]}, 0))"),
        children.map(lambda e: f"(- {e})"),
        children.map(lambda e: f"ln(1 + abs({e}))"),
        children.map(lambda e: f"log10(1 + abs({e}))"),
        children.map(lambda e: f"sqrt(abs({e}))"),
        children.map(lambda e: f"exp(least({e}, 3))"),
        st.tuples(children, st.sampled_from(["2", "0.5", "3", "0"])).map(
            lambda p: f"power(abs({p[0]}), {p[1]})"
        ),
        children.map(lambda e: f"abs({e})"),
        children.map(lambda e: f"floor({e})"),
        children.map(lambda e: f"round({e})"),
        children.map(lambda e: f"try_cast({e} as integer)"),
        children.map(lambda e: f"cast({e} as double)"),
        st.lists(children, min_size=2, max_size=3).map(lambda es: f"coalesce({', '.join(es)})"),
        st.lists(children, min_size=2, max_size=3).map(lambda es: f"greatest({', '.join(es)})"),
        st.lists(children, min_size=2, max_size=3).map(lambda es: f"least({', '.join(es)})"),
        two.map(lambda p: f"nullif({p[0]}, {p[1]})"),
        st.tuples(conditions, children, children).map(
            lambda p: f"case when {p[0]} then {p[1]} else {p[2]} end"
        ),
        st.tuples(conditions, children).map(lambda p: f"case when {p[0]} then {p[1]} end"),
        st.tuples(children, children, children).map(
            lambda p: f"case {p[0]} when {p[1]} then 1 else {p[2]} end"
        ),
        conditions.map(lambda c: f"cast({c} as double)"),
    )


def _conditions(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    comparison = st.tuples(children, st.sampled_from(["=", "<>", "<", "<=", ">", ">="]), children)
    atom = st.one_of(
        comparison.map(lambda p: f"({p[0]} {p[1]} {p[2]})"),
        children.map(lambda e: f"({e} is null)"),
        children.map(lambda e: f"({e} is not null)"),
        st.tuples(children, children, children).map(
            lambda p: f"({p[0]} between {p[1]} and {p[2]})"
        ),
    )
    return st.one_of(
        atom,
        st.tuples(atom, atom).map(lambda p: f"({p[0]} and {p[1]})"),
        st.tuples(atom, atom).map(lambda p: f"({p[0]} or {p[1]})"),
        atom.map(lambda c: f"(not {c})"),
    )


EXPRESSIONS = st.recursive(st.one_of(COLUMNS, LITERALS), _numeric, max_leaves=8)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(expression=EXPRESSIONS)
def test_random_guarded_expression_matches_duckdb(duck, expression):
    sql = f"select id, {expression} as y from rows"
    rows = duck.execute(f"select y from ({sql}) order by id").fetchall()
    expected = np.array([math.nan if r[0] is None else float(r[0]) for r in rows])
    compiled = compile_features(sql, list(TYPES), id_column="id", input_types=TYPES)
    got = evaluate(compiled, TABLE)[:, 0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=sql)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-300, equal_nan=True, err_msg=sql)
