"""Whatever is not a pure row-level projection of the subset fails, naming feature and construct."""

from __future__ import annotations

import pytest

from segmentation.errors import FeatureCompileError
from training.features.sql_onnx import compile_features

INPUTS = ["balance", "purchases", "tenure"]


def _compile(sql: str):
    return compile_features(sql, INPUTS)


@pytest.mark.parametrize(
    ("expression", "construct"),
    [
        ("sum(balance) over ()", "window function"),
        ("row_number() over (order by balance)", "window function"),
        ("sum(balance)", "aggregate function SUM"),
        ("avg(balance)", "aggregate function AVG"),
        ("(select 1)", "subquery"),
        ("balance in (select 1)", "subquery"),
        ("regexp_matches(balance, 'x')", "function REGEXP_MATCHES"),
        ("random()", "function RANDOM"),
        ("cbrt(balance)", "function CBRT"),
        ("'abc'", "string literal"),
        ("cast(balance as varchar)", "CAST to TEXT"),
        ("cast('12' as integer)", "string literal"),
        ("balance is true", "IS TRUE"),
        ("balance + (purchases > 0)", "arithmetic on a boolean"),
        ("case when balance then 1 end", "non-boolean condition of type double"),
        ("floor(balance, 2)", "FLOOR with non-constant digits"),
        ("round(balance, tenure)", "ROUND with non-constant digits"),
        ("credit_limit / 2", "unknown column credit_limit"),
        ("customer_id + 1", "arithmetic on the id column"),
        ("other.balance", "reference to unknown table other"),
    ],
)
def test_unsupported_expression_names_the_feature_and_construct(expression, construct):
    with pytest.raises(FeatureCompileError) as caught:
        _compile(f"select customer_id, {expression} as bad_feature from stg_customers")
    assert caught.value.feature == "bad_feature"
    assert caught.value.construct == construct


@pytest.mark.parametrize(
    ("sql", "construct"),
    [
        ("select balance as x from stg_customers where balance > 0", "WHERE"),
        ("select balance as x from stg_customers group by balance", "GROUP BY"),
        ("select balance as x from stg_customers group by 1 having count(*) > 1", "GROUP BY"),
        ("select distinct balance as x from stg_customers", "DISTINCT"),
        ("select balance as x from stg_customers order by 1", "ORDER BY"),
        ("select balance as x from stg_customers limit 3", "LIMIT"),
        ("select a.balance as x from stg_customers a join t b on true", "JOIN"),
        ("select balance as x from stg_customers qualify balance > 1", "QUALIFY"),
        ("select balance as x from stg_customers union select 1", "UNION"),
        ("select x from (select balance as x from stg_customers)", "subquery"),
        ("select 1 as x", "SELECT without FROM"),
        ("select balance as x from read_csv('f.csv')", "function READ_CSV"),
        ("with recursive r as (select 1 as x) select x from r", "WITH RECURSIVE"),
        ("select balance as x from stg_customers; select 1", "more than one statement"),
        ("insert into t select balance from stg_customers", "INSERT statement"),
        ("select balance as from from", "SQL syntax"),
        ("select balance + 1 from stg_customers", "a computed column without an alias"),
        ("select customer_id from stg_customers", "no feature column"),
        (
            "with a as (select * from stg_customers), b as (select * from other_table) "
            "select a.balance as x from a",
            "a second base table",
        ),
        ("select * replace (balance + 1 as balance) from stg_customers", "* REPLACE"),
        ("select * exclude (nope) from stg_customers", "* EXCLUDE of unknown column nope"),
    ],
)
def test_non_projection_query_is_refused_with_the_construct(sql, construct):
    with pytest.raises(FeatureCompileError) as caught:
        _compile(sql)
    assert caught.value.construct == construct


@pytest.mark.parametrize(
    ("sql", "feature", "construct"),
    [
        (
            "with r as (select balance / 2 as half, ln(balance) over () as w from stg_customers)"
            " select half from r",
            "w",
            "window function",
        ),
        (
            "with r as (select balance as x from stg_customers where tenure > 1) select x from r",
            "r",
            "WHERE",
        ),
        ("select balance as x, purchases as x from stg_customers", "x", "a duplicate column name"),
        (
            "select customer_id as x, balance from stg_customers",
            "x",
            "the id column customer_id as a feature",
        ),
    ],
)
def test_error_inside_a_cte_names_its_column_or_cte(sql, feature, construct):
    with pytest.raises(FeatureCompileError) as caught:
        _compile(sql)
    assert (caught.value.feature, caught.value.construct) == (feature, construct)


def test_error_message_never_contains_input_values():
    with pytest.raises(FeatureCompileError) as caught:
        _compile("select regexp_replace(balance, '1234-5678', 'x') as masked from stg_customers")
    assert "1234-5678" not in str(caught.value)
    assert "masked" in str(caught.value)
