"""Settings come from environment variables, with local defaults and clear errors."""

from __future__ import annotations

import pytest

from segmentation import ConfigError, Settings
from segmentation.config import parse_bool


def test_defaults_point_at_local_files_and_the_emulator_ports(monkeypatch):
    for name in ("SEGMENTATION_DATA", "SEGMENTATION_WAREHOUSE", "SEGMENTATION_MODEL_STORE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert settings.data.endswith("var/data/customers.csv")
    assert settings.warehouse.endswith("var/warehouse.duckdb")
    assert settings.model_store.endswith("var/model-store")
    assert (settings.predict_port, settings.health_port) == (8080, 8081)


def test_environment_variables_override_the_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGMENTATION_MODEL_STORE", f"file://{tmp_path}")
    monkeypatch.setenv("SEGMENTATION_MAX_BATCH_ROWS", " 25 ")
    monkeypatch.setenv("SEGMENTATION_POINTER_POLL_SECONDS", "0.5")
    monkeypatch.setenv("SEGMENTATION_SEED", "")  # blank means unset
    settings = Settings.from_env()
    assert settings.model_store == f"file://{tmp_path}"
    assert settings.max_batch_rows == 25
    assert settings.pointer_poll_seconds == 0.5
    assert settings.seed == Settings().seed


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("SEGMENTATION_MAX_BATCH_ROWS", "many", "expected int"),
        ("SEGMENTATION_POINTER_POLL_SECONDS", "soon", "expected float"),
        ("SEGMENTATION_PREDICT_PORT", "80.5", "expected int"),
    ],
)
def test_a_malformed_setting_names_the_variable_and_what_was_expected(
    monkeypatch, name, raw, expected
):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError, match=f"{name}: {expected}"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("raw", "value"), [("true", True), ("YES", True), ("1", True), ("false", False), ("0", False)]
)
def test_booleans_accept_the_usual_spellings(raw, value):
    assert parse_bool(raw) is value


def test_a_boolean_that_is_neither_is_refused():
    with pytest.raises(ValueError):
        parse_bool("maybe")
