"""The generated dbt files are derived from segmentation.schema and the feature YAML, and
kept in sync: the staging contract, the feature-name macro and segment_profiles' contract."""

from __future__ import annotations

import shutil

import pytest
import yaml

from segmentation.schema import FIELDS
from training.contract import dbt as contract_dbt

MARTS = contract_dbt.DBT_PROJECT_DIR / "models" / "marts"
PROFILE_FIGURES = [
    ("model_version", "varchar"),
    ("segment_id", "bigint"),
    ("segment_name", "varchar"),
    ("customer_count", "bigint"),
    ("customer_share", "double"),
    ("avg_distance", "double"),
    ("max_distance", "double"),
]


def _yaml_features(path=MARTS / "customer_features.yml") -> list[str]:
    """The feature names as the feature model's YAML lists them (read here, not via catalog)."""
    [model] = yaml.safe_load(path.read_text())["models"]
    return [c["name"] for c in model["columns"] if c["name"] != "customer_id"]


def test_committed_dbt_contract_files_are_up_to_date():
    assert contract_dbt.stale_files() == [], "run: python -m training.contract.dbt"


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0"), (1.0, "1"), (12.0, "12"), (1.5, "1.5"), (1e6, "1e6"), (1e9, "1e9")],
)
def test_bounds_render_short_and_identically_in_sql_and_yaml(value, text):
    assert contract_dbt.format_bound(value) == text


def _staging_rules() -> dict[str, dict]:
    """The column rules of the staging YAML's one column_rules test, by column."""
    [model] = yaml.safe_load(contract_dbt.render_staging_yaml())["models"]
    [test] = [t["column_rules"] for t in model["data_tests"] if "column_rules" in t]
    assert test["name"] == contract_dbt.STAGING_RULES_TEST
    return test["arguments"]["columns"]


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_staging_yaml_column_carries_the_schema_type_nullability_and_bounds(field):
    [model] = yaml.safe_load(contract_dbt.render_staging_yaml())["models"]
    [column] = [c for c in model["columns"] if c["name"] == field.name]
    assert column["data_type"] == field.sql_type
    rules = _staging_rules()[field.name]
    assert rules.get("not_null", False) is not field.nullable
    assert (rules["min_value"], rules["max_value"]) == (field.minimum, field.maximum)
    assert field.description in column["description"]


def test_staging_rules_cover_every_field_and_the_id_in_one_test():
    [model] = yaml.safe_load(contract_dbt.render_staging_yaml())["models"]
    assert list(_staging_rules()) == ["customer_id", *(f.name for f in FIELDS)]
    assert _staging_rules()["customer_id"] == {"not_null": True}
    [id_column] = [c for c in model["columns"] if c["name"] == "customer_id"]
    assert id_column["data_tests"] == ["unique"]
    # No per-column error-level test is left to scan the model again.
    per_column = [t for c in model["columns"] for t in c.get("data_tests", [])]
    warn_only = [t for t in per_column if t != "unique"]
    assert all(t["accepted_range"]["config"]["severity"] == "warn" for t in warn_only)


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
        for t in c.get("data_tests", [])
        if isinstance(t, dict) and t["accepted_range"].get("config", {}).get("severity") == "warn"
    }
    assert warned == {f.name: f.expected_maximum for f in FIELDS if f.expected_maximum}


def test_feature_names_macro_lists_the_feature_yaml_columns_in_order():
    macro = contract_dbt.render_feature_names_macro()
    listed = [line.strip().strip('",') for line in macro.splitlines() if line.startswith(" " * 8)]
    assert listed == _yaml_features()
    assert len(listed) == 24


def test_profiles_yaml_declares_every_profile_column_with_its_type_under_a_contract():
    [model] = yaml.safe_load(contract_dbt.render_profiles_yaml())["models"]
    assert model["config"]["contract"] == {"enforced": True}
    columns = [(c["name"], c["data_type"]) for c in model["columns"]]
    assert columns == PROFILE_FIGURES + [(f"avg_{f}", "double") for f in _yaml_features()]


def test_scoring_models_share_one_switch_on_the_model_version_var():
    [profiles] = yaml.safe_load(contract_dbt.render_profiles_yaml())["models"]
    [segments] = yaml.safe_load((MARTS / "customer_segments.yml").read_text())["models"]
    assert profiles["config"]["enabled"] == segments["config"]["enabled"]
    assert 'var("segmentation_model_version"' in segments["config"]["enabled"]


def test_a_new_feature_makes_the_macro_and_the_profiles_stale_until_regenerated(tmp_path):
    project = tmp_path / "dbt_project"
    shutil.copytree(contract_dbt.DBT_PROJECT_DIR / "macros", project / "macros")
    shutil.copytree(contract_dbt.DBT_PROJECT_DIR / "models", project / "models")
    features = project / contract_dbt.FEATURES_YAML
    doc = yaml.safe_load(features.read_text())
    doc["models"][0]["columns"].append(
        {"name": "new_ratio", "description": "A new ratio.", "data_type": "double"}
    )
    features.write_text(yaml.safe_dump(doc, sort_keys=False))
    stale = {project / contract_dbt.FEATURE_NAMES_MACRO, project / contract_dbt.PROFILES_YAML}
    assert set(contract_dbt.stale_files(project)) == stale
    assert set(contract_dbt.write_dbt_contract(project)) == stale
    assert '"new_ratio"' in (project / contract_dbt.FEATURE_NAMES_MACRO).read_text()
    [model] = yaml.safe_load((project / contract_dbt.PROFILES_YAML).read_text())["models"]
    assert model["columns"][-1] == {
        "name": "avg_new_ratio",
        "description": "Mean new_ratio of the segment's customers (NULLs ignored): A new ratio.",
        "data_type": "double",
    }


@pytest.mark.parametrize(
    "relative",
    [
        contract_dbt.FIELDS_MACRO,
        contract_dbt.STAGING_YAML,
        contract_dbt.FEATURE_NAMES_MACRO,
        contract_dbt.PROFILES_YAML,
    ],
)
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
