"""Settings, read once from environment variables into a frozen dataclass.

Every setting has a local default so the whole system runs offline from a fresh clone.
Infrastructure templates (``infra/``) are the only place cloud values are set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import ConfigError

#: Repository root when running from a checkout; local state lives under ``var/``.
_DEFAULT_HOME = Path(os.environ.get("SEGMENTATION_HOME", Path.cwd()))


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _env_int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, found {raw!r}") from None


def _env_float(name: str, default: float) -> float:
    raw = _env(name, str(default))
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, found {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    """All configuration, each field documented with its environment variable."""

    #: SEGMENTATION_DATA: raw customer file (CSV or Parquet), path or URI.
    data: str = field(default_factory=lambda: str(_DEFAULT_HOME / "var" / "data" / "customers.csv"))
    #: SEGMENTATION_WAREHOUSE: DuckDB database file that dbt builds.
    warehouse: str = field(default_factory=lambda: str(_DEFAULT_HOME / "var" / "warehouse.duckdb"))
    #: SEGMENTATION_MODEL_STORE: model store URI (file path, file://, gs:// or s3://).
    model_store: str = field(default_factory=lambda: str(_DEFAULT_HOME / "var" / "model-store"))
    #: SEGMENTATION_SAMPLE_ROWS: rows `segmentation generate` writes by default.
    sample_rows: int = 20_000
    #: SEGMENTATION_SEED: seed for data generation and training.
    seed: int = 42
    #: SEGMENTATION_MAX_BATCH_ROWS: most customers one predict request may carry.
    max_batch_rows: int = 1_000
    #: SEGMENTATION_MAX_BODY_BYTES: largest predict request body accepted.
    max_body_bytes: int = 1_048_576
    #: SEGMENTATION_POINTER_POLL_SECONDS: how often serving checks for a new current model.
    pointer_poll_seconds: float = 30.0
    #: SEGMENTATION_PREDICT_PORT / SEGMENTATION_HEALTH_PORT: local emulator ports.
    predict_port: int = 8080
    health_port: int = 8081

    @classmethod
    def from_env(cls) -> Settings:
        """Read every setting from its environment variable, falling back to defaults."""
        defaults = cls()
        return cls(
            data=_env("SEGMENTATION_DATA", defaults.data),
            warehouse=_env("SEGMENTATION_WAREHOUSE", defaults.warehouse),
            model_store=_env("SEGMENTATION_MODEL_STORE", defaults.model_store),
            sample_rows=_env_int("SEGMENTATION_SAMPLE_ROWS", defaults.sample_rows),
            seed=_env_int("SEGMENTATION_SEED", defaults.seed),
            max_batch_rows=_env_int("SEGMENTATION_MAX_BATCH_ROWS", defaults.max_batch_rows),
            max_body_bytes=_env_int("SEGMENTATION_MAX_BODY_BYTES", defaults.max_body_bytes),
            pointer_poll_seconds=_env_float(
                "SEGMENTATION_POINTER_POLL_SECONDS", defaults.pointer_poll_seconds
            ),
            predict_port=_env_int("SEGMENTATION_PREDICT_PORT", defaults.predict_port),
            health_port=_env_int("SEGMENTATION_HEALTH_PORT", defaults.health_port),
        )

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
