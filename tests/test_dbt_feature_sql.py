"""The compiled feature SELECT: a pure projection in the supported subset, stable text."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlglot
import yaml
from sqlglot import exp

from segmentation import Settings
from training.features import compiled_feature_sql
from training.features._dbt import DBT_PROJECT_DIR

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cc_general.csv"
FEATURES_YAML = DBT_PROJECT_DIR / "models" / "marts" / "customer_features.yml"


def relied_on_features() -> set[str]:
    """Feature names the code relies on by name: the default clustering features and
    every feature the segment naming rules score."""
    from training.model.params import BEHAVIOUR_FEATURES
    from training.segments.naming import CORE_ARCHETYPES, EXTRA_ARCHETYPES

    rules = {**CORE_ARCHETYPES, **EXTRA_ARCHETYPES}.values()
    return set(BEHAVIOUR_FEATURES) | {name for terms in rules for name, _ in terms}


#: Node types the ONNX compiler supports (DESIGN: the train/serve contract), plus the
#: query scaffolding of CTE chains.
SUPPORTED = (
    exp.Column, exp.Literal, exp.Null, exp.Boolean, exp.Paren, exp.Neg, exp.Alias,
    exp.Identifier, exp.Cast, exp.DataType, exp.Add, exp.Sub, exp.Mul, exp.Div,
    exp.Nullif, exp.Coalesce, exp.Ln, exp.Log, exp.Exp, exp.Sqrt, exp.Abs, exp.Pow,
    exp.Greatest, exp.Least, exp.Case, exp.If, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT,
    exp.LTE, exp.And, exp.Or, exp.Not, exp.Is,
    exp.Select, exp.With, exp.CTE, exp.TableAlias, exp.From, exp.Table, exp.Star,
)  # fmt: skip


def feature_yaml_model() -> dict:
    [model] = yaml.safe_load(FEATURES_YAML.read_text(encoding="utf-8"))["models"]
    return model


def feature_yaml_columns() -> list[dict]:
    return feature_yaml_model()["columns"]


def feature_yaml_rules() -> dict[str, dict]:
    """Column -> its rules in the model's one column_rules test."""
    [test] = [t["column_rules"] for t in feature_yaml_model()["data_tests"]]
    return test["arguments"]["columns"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("compile")
    settings = Settings(data=str(REAL_DATA), warehouse=str(tmp / "a.duckdb"))
    return compiled_feature_sql(settings, target_path=tmp / "target", log_path=tmp / "logs")


def final_columns(tree: exp.Expression) -> list[str]:
    # The final SELECT is `select * from <last CTE>`: its columns are that CTE's.
    ctes = {cte.alias: cte.this for cte in tree.find_all(exp.CTE)}
    select = tree
    for _ in range(len(ctes) + 1):  # each step goes one CTE back; a cycle cannot loop forever
        if select.named_selects != ["*"]:
            return select.named_selects
        select = ctes[select.find(exp.From).this.name]  # breadth-first: this SELECT's FROM
    raise AssertionError("the final SELECT's `select *` chain never reaches named columns")


@pytest.mark.slow
def test_compiled_sql_uses_only_supported_constructs(compiled):
    tree = sqlglot.parse_one(compiled, read="duckdb")
    unsupported = {type(n).__name__ for n in tree.walk() if not isinstance(n, SUPPORTED)}
    assert unsupported == set()


@pytest.mark.slow
@pytest.mark.parametrize("clause", ["joins", "where", "group", "having", "order", "limit"])
def test_compiled_sql_has_no_row_changing_clause(compiled, clause):
    tree = sqlglot.parse_one(compiled, read="duckdb")
    assert all(not s.args.get(clause) for s in tree.find_all(exp.Select))
    assert all(not s.args.get("distinct") for s in tree.find_all(exp.Select))


@pytest.mark.slow
def test_compiled_sql_outputs_the_id_then_the_documented_features_in_order(compiled):
    columns = final_columns(sqlglot.parse_one(compiled, read="duckdb"))
    assert columns == [c["name"] for c in feature_yaml_columns()]
    assert columns[0] == "customer_id"
    assert relied_on_features() <= set(columns[1:])
    assert 15 <= len(columns) - 1 <= 25


@pytest.mark.slow
def test_compiled_sql_does_not_depend_on_the_warehouse_path(compiled, tmp_path):
    other = Settings(data=str(REAL_DATA), warehouse=str(tmp_path / "elsewhere" / "b.duckdb"))
    assert compiled_feature_sql(other, target_path=tmp_path / "t", log_path=tmp_path / "l") == (
        compiled
    )
    assert '"memory"."main"."stg_customers"' in compiled


@pytest.mark.parametrize("column", feature_yaml_columns(), ids=lambda c: c["name"])
def test_every_feature_is_typed_tested_and_documented(column):
    # `string`: VARCHAR on DuckDB, STRING on Spark (one contract for both engines).
    assert column["data_type"] == ("string" if column["name"] == "customer_id" else "double")
    assert len(column["description"].split()) >= 6
    rules = feature_yaml_rules()[column["name"]]
    if column["name"] == "customer_id":
        assert rules == {"not_null": True}
        assert column["data_tests"] == ["unique"]
    else:
        assert {"min_value", "max_value"} <= set(rules)  # a range for every feature


def test_feature_rules_name_only_columns_of_the_model():
    assert set(feature_yaml_rules()) == {c["name"] for c in feature_yaml_columns()}
