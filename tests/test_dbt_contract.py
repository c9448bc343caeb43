"""The dbt staging contract is generated from segmentation.schema and kept in sync."""

from __future__ import annotations

import shutil

import pytest
import yaml

from segmentation.schema import FIELDS
from training.contract import dbt as contract_dbt


def test_committed_dbt_contract_files_are_up_to_date():
    assert contract_dbt.stale_files() == [], "run: python -m training.contract.dbt"


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0"), (1.0, "1"), (12.0, "12"), (1.5, "1.5"), (1e6, "1e6"), (1e9, "1e9")],
)
def test_bounds_render_short_and_identically_in_sql_and_yaml(value, text):
    assert contract_dbt.format_bound(value) == text


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_staging_yaml_column_carries_the_schema_type_nullability_and_bounds(field):
    [model] = yaml.safe_load(contract_dbt.render_staging_yaml())["models"]
    [column] = [c for c in model["columns"] if c["name"] == field.name]
    assert column["data_type"] == field.sql_type
    assert ("not_null" in column["data_tests"]) is not field.nullable
    hard = column["data_tests"][-1 if field.expected_maximum is None else -2]
    assert hard["accepted_range"]["arguments"] == {
        "min_value": field.minimum,
        "max_value": field.maximum,
    }
    assert field.description in column["description"]


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_fields_macro_lists_every_field_with_its_rules(field):
    macro = contract_dbt.render_fields_macro()
    assert f'"raw_name": "{field.raw_name}", "name": "{field.name}"' in macro
    assert f'"minimum_text": "{contract_dbt.format_bound(field.minimum)}"' in macro


def test_expected_maximum_becomes_a_warn_level_test():
    [model] = yaml.safe_load(contract_dbt.render_staging_yaml())["models"]
    warned = {
        c["name"]: t["accepted_range"]["arguments"]["max_value"]
        for c in model["columns"]
        for t in c["data_tests"]
        if isinstance(t, dict) and t["accepted_range"].get("config", {}).get("severity") == "warn"
    }
    assert warned == {f.name: f.expected_maximum for f in FIELDS if f.expected_maximum}


@pytest.mark.parametrize("relative", [contract_dbt.FIELDS_MACRO, contract_dbt.STAGING_YAML])
def test_edited_or_missing_generated_file_is_reported_then_rewritten(tmp_path, relative):
    project = tmp_path / "dbt_project"
    shutil.copytree(contract_dbt.DBT_PROJECT_DIR / "macros", project / "macros")
    shutil.copytree(contract_dbt.DBT_PROJECT_DIR / "models", project / "models")
    (project / relative).write_text("-- edited by hand\n", encoding="utf-8")
    assert contract_dbt.stale_files(project) == [project / relative]
    assert contract_dbt.write_dbt_contract(project) == [project / relative]
    assert contract_dbt.stale_files(project) == []
    (project / relative).unlink()
    assert contract_dbt.main(["--check", "--project-dir", str(project)]) == 1
