"""Settings, read once from environment variables into a frozen dataclass.

Every setting has a local default so the whole system runs offline from a fresh clone.
Infrastructure templates (``infra/``) are the only place cloud values are set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypeVar

from .errors import ConfigError

T = TypeVar("T")

#: Repository root when running from a checkout; local state lives under ``var/``.
_DEFAULT_HOME = Path(os.environ.get("SEGMENTATION_HOME", Path.cwd()))


def env_value(name: str, parse: Callable[[str], T], expected: str | None = None) -> T | None:
    """The value of environment variable ``name`` parsed by ``parse``; None if unset or blank.

    Every setting of the project, the core's and training's, is read through here, so a
    malformed value always fails the same way: a ``ConfigError`` naming the variable and
    what was expected (``expected``, or the parser's name).
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return parse(raw)
    except ValueError:
        what = expected or getattr(parse, "__name__", "a valid value")
        raise ConfigError(f"{name}: expected {what}, found {raw!r}") from None


def parse_bool(raw: str) -> bool:
    """``true/false``, ``yes/no``, ``1/0`` (any case); ValueError otherwise."""
    value = raw.strip().lower()
    if value not in ("1", "true", "yes", "0", "false", "no"):
        raise ValueError(raw)
    return value in ("1", "true", "yes")


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
        values = {
            "data": env_value("SEGMENTATION_DATA", str),
            "warehouse": env_value("SEGMENTATION_WAREHOUSE", str),
            "model_store": env_value("SEGMENTATION_MODEL_STORE", str),
            "sample_rows": env_value("SEGMENTATION_SAMPLE_ROWS", int),
            "seed": env_value("SEGMENTATION_SEED", int),
            "max_batch_rows": env_value("SEGMENTATION_MAX_BATCH_ROWS", int),
            "max_body_bytes": env_value("SEGMENTATION_MAX_BODY_BYTES", int),
            "pointer_poll_seconds": env_value("SEGMENTATION_POINTER_POLL_SECONDS", float),
            "predict_port": env_value("SEGMENTATION_PREDICT_PORT", int),
            "health_port": env_value("SEGMENTATION_HEALTH_PORT", int),
        }
        return cls(**{k: v for k, v in values.items() if v is not None})

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
