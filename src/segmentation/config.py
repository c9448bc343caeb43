"""Settings, read once from environment variables into a frozen dataclass.

Every environment variable the project reads is read here, by :meth:`Settings.from_env`,
and nowhere else; nothing writes ``os.environ``. Every setting has a local default so the
whole system runs offline from a fresh clone. Infrastructure templates (``infra/``) are
the only place cloud values are set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypeVar

from segmentation.errors import ConfigError

T = TypeVar("T")

#: Local state under ``home`` for the settings left empty.
_LOCAL_DEFAULTS = {
    "data": "var/data/customers.csv",
    "warehouse": "var/warehouse.duckdb",
    "model_store": "var/model-store",
    "spark_warehouse": "var/spark-warehouse",
}

#: The engines that build the feature layer and batch-score (SEGMENTATION_ENGINE).
ENGINES = ("duckdb", "spark")


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


def _quantile_pair(raw: str) -> tuple[float, float]:
    low, high = (float(p) for p in raw.split(","))  # ValueError unless exactly two numbers
    return low, high


def _engine(raw: str) -> str:
    if raw.lower() not in ENGINES:
        raise ValueError(raw)
    return raw.lower()


def parse_bool(raw: str) -> bool:
    """``true/false``, ``yes/no``, ``1/0`` (any case); ValueError otherwise."""
    value = raw.strip().lower()
    if value not in ("1", "true", "yes", "0", "false", "no"):
        raise ValueError(raw)
    return value in ("1", "true", "yes")


def _env(name: str, default, doc: str):
    """A policy field read from environment variable ``name`` (see :func:`_read_policy`)."""
    return field(default=default, metadata={"env": name, "doc": doc})


_PARSERS: dict[type, Callable[[str], object]] = {float: float, int: int, bool: parse_bool}


def _read_policy(cls: type[T]) -> T:
    """``cls`` with each field read from the environment variable in its metadata."""
    values = {}
    for f in fields(cls):
        kind = type(f.default)
        value = env_value(f.metadata["env"], _PARSERS[kind], kind.__name__)
        if value is not None:
            values[f.name] = value
    return cls(**values)


@dataclass(frozen=True)
class DriftThresholds:
    """When drift warns and when it acts (effect sizes, never p-values)."""

    psi_warn: float = _env("SEGMENTATION_DRIFT_PSI_WARN", 0.10, "feature or distance PSI: warn")
    psi_act: float = _env("SEGMENTATION_DRIFT_PSI_ACT", 0.25, "feature or distance PSI: act")
    js_warn: float = _env("SEGMENTATION_DRIFT_JS_WARN", 0.10, "Jensen-Shannon distance: warn")
    js_act: float = _env("SEGMENTATION_DRIFT_JS_ACT", 0.20, "Jensen-Shannon distance: act")
    share_warn_points: float = _env(
        "SEGMENTATION_DRIFT_SHARE_WARN_POINTS", 5.0, "largest segment-share change: warn"
    )
    share_act_points: float = _env(
        "SEGMENTATION_DRIFT_SHARE_ACT_POINTS", 10.0, "largest segment-share change: act"
    )
    atypical_warn_ratio: float = _env(
        "SEGMENTATION_DRIFT_ATYPICAL_WARN_RATIO", 2.0, "atypical share over training's: warn"
    )
    atypical_act_ratio: float = _env(
        "SEGMENTATION_DRIFT_ATYPICAL_ACT_RATIO", 3.0, "atypical share over training's: act"
    )
    persistence: int = _env(
        "SEGMENTATION_DRIFT_PERSISTENCE", 2, "consecutive act-level checks before acting"
    )


@dataclass(frozen=True)
class RetrainPolicy:
    """When the scheduled run retrains, and the gates a candidate must pass."""

    max_model_age_days: float = _env(
        "SEGMENTATION_RETRAIN_MAX_AGE_DAYS", 30.0, "retrain a model older than this"
    )
    max_quarantine_share: float = _env(
        "SEGMENTATION_RETRAIN_MAX_QUARANTINE_SHARE", 0.05, "abort above this quarantined share"
    )
    min_segment_share: float = _env(
        "SEGMENTATION_GATE_MIN_SEGMENT_SHARE", 0.05, "every segment at least this share"
    )
    silhouette_tolerance: float = _env(
        "SEGMENTATION_GATE_SILHOUETTE_TOLERANCE", 0.05, "candidate may trail current by this"
    )
    min_stability_ari: float = _env(
        "SEGMENTATION_GATE_MIN_ARI", 0.80, "bootstrap ARI floor of the candidate"
    )
    lease_seconds: float = _env(
        "SEGMENTATION_RETRAIN_LEASE_SECONDS", 3600.0, "a writer's lease; taken over after"
    )


@dataclass(frozen=True)
class Settings:
    """All configuration, each field documented with its environment variable."""

    #: SEGMENTATION_HOME: folder whose ``var/`` holds the local defaults (default: cwd).
    home: str = field(default_factory=lambda: str(Path.cwd()))
    #: SEGMENTATION_DATA: raw customer file (CSV or Parquet), path or URI.
    data: str = ""
    #: SEGMENTATION_WAREHOUSE: DuckDB database file that dbt builds.
    warehouse: str = ""
    #: SEGMENTATION_MODEL_STORE: model store URI (file path, file://, gs:// or s3://).
    model_store: str = ""
    #: SEGMENTATION_ENGINE: ``duckdb`` (one machine) or ``spark`` builds the features and
    #: batch-scores; training always runs here, on a sample.
    engine: str = "duckdb"
    #: SEGMENTATION_SPARK_MASTER: the Spark master of the ``spark`` engine's session.
    spark_master: str = "local[2]"
    #: SEGMENTATION_SPARK_WAREHOUSE: where Spark keeps its managed (Parquet) tables.
    spark_warehouse: str = ""
    #: SEGMENTATION_SAMPLE_ROWS: rows `segmentation generate` writes by default.
    sample_rows: int = 20_000
    #: SEGMENTATION_SEED: seed for data generation and training.
    seed: int = 42
    #: SEGMENTATION_MAX_BATCH_ROWS: most customers one predict request may carry.
    max_batch_rows: int = 1_000
    #: SEGMENTATION_MAX_BODY_BYTES: largest predict request body accepted.
    max_body_bytes: int = 1_048_576
    #: SEGMENTATION_POINTER_POLL_SECONDS: a request older than this since the last pointer
    #: check triggers one (in the background), so a promotion reaches every instance.
    pointer_poll_seconds: float = 30.0
    #: SEGMENTATION_MODEL_LOAD_WAIT_SECONDS: how long an instance's first requests wait for
    #: its model before answering 503 with Retry-After.
    model_load_wait_seconds: float = 20.0
    #: SEGMENTATION_PREDICT_PORT / SEGMENTATION_HEALTH_PORT: local emulator ports.
    predict_port: int = 8080
    health_port: int = 8081
    #: DBT_TARGET_PATH / DBT_LOG_PATH: dbt's ``target/`` and ``logs/`` (default: in the
    #: dbt project); parallel runs must give each its own.
    dbt_target_path: str | None = None
    dbt_log_path: str | None = None
    # Training knobs (``training.model.params.TrainingParams.from_settings``); None keeps
    # the training default.
    #: SEGMENTATION_K / SEGMENTATION_ALGORITHM: fix the number of segments / the algorithm.
    k: int | None = None
    algorithm: str | None = None
    #: SEGMENTATION_SELECT: false skips the k/algorithm sweep.
    select: bool | None = None
    #: SEGMENTATION_CLUSTER_FEATURES: comma list of features to cluster on, or ``all``.
    cluster_features: str | None = None
    #: SEGMENTATION_PCA_VARIANCE: share of the variance PCA keeps.
    pca_variance: float | None = None
    #: SEGMENTATION_KMEANS_N_INIT: KMeans restarts.
    kmeans_n_init: int | None = None
    #: SEGMENTATION_CLIP_QUANTILES: ``low,high`` outlier clipping quantiles.
    clip_quantiles: tuple[float, float] | None = None
    #: Drift thresholds and the retrain policy (their fields name their variables).
    drift: DriftThresholds = field(default_factory=DriftThresholds)
    retrain: RetrainPolicy = field(default_factory=RetrainPolicy)
    #: MLFLOW_TRACKING_URI: log training runs to MLflow when set (the ``mlflow`` extra).
    mlflow_tracking_uri: str | None = None
    #: SEGMENTATION_FAILPOINT: a named point at which the process kills itself; for the
    #: fault tests of the scheduled run only (``training.retrain.faults``).
    failpoint: str | None = None

    def __post_init__(self) -> None:
        for name, relative in _LOCAL_DEFAULTS.items():
            if not getattr(self, name):
                object.__setattr__(self, name, str(Path(self.home) / relative))

    @classmethod
    def from_env(cls) -> Settings:
        """Read every setting from its environment variable, falling back to defaults."""
        values = {
            "home": env_value("SEGMENTATION_HOME", str),
            "data": env_value("SEGMENTATION_DATA", str),
            "warehouse": env_value("SEGMENTATION_WAREHOUSE", str),
            "model_store": env_value("SEGMENTATION_MODEL_STORE", str),
            "engine": env_value("SEGMENTATION_ENGINE", _engine, " or ".join(ENGINES)),
            "spark_master": env_value("SEGMENTATION_SPARK_MASTER", str),
            "spark_warehouse": env_value("SEGMENTATION_SPARK_WAREHOUSE", str),
            "sample_rows": env_value("SEGMENTATION_SAMPLE_ROWS", int),
            "seed": env_value("SEGMENTATION_SEED", int),
            "max_batch_rows": env_value("SEGMENTATION_MAX_BATCH_ROWS", int),
            "max_body_bytes": env_value("SEGMENTATION_MAX_BODY_BYTES", int),
            "pointer_poll_seconds": env_value("SEGMENTATION_POINTER_POLL_SECONDS", float),
            "model_load_wait_seconds": env_value("SEGMENTATION_MODEL_LOAD_WAIT_SECONDS", float),
            "predict_port": env_value("SEGMENTATION_PREDICT_PORT", int),
            "health_port": env_value("SEGMENTATION_HEALTH_PORT", int),
            "dbt_target_path": env_value("DBT_TARGET_PATH", str),
            "dbt_log_path": env_value("DBT_LOG_PATH", str),
            "k": env_value("SEGMENTATION_K", int),
            "algorithm": env_value("SEGMENTATION_ALGORITHM", str.lower),
            "select": env_value("SEGMENTATION_SELECT", parse_bool, "true or false"),
            "cluster_features": env_value("SEGMENTATION_CLUSTER_FEATURES", str),
            "pca_variance": env_value("SEGMENTATION_PCA_VARIANCE", float),
            "kmeans_n_init": env_value("SEGMENTATION_KMEANS_N_INIT", int),
            "clip_quantiles": env_value(
                "SEGMENTATION_CLIP_QUANTILES", _quantile_pair, "'low,high', two numbers"
            ),
            "drift": _read_policy(DriftThresholds),
            "retrain": _read_policy(RetrainPolicy),
            "mlflow_tracking_uri": env_value("MLFLOW_TRACKING_URI", str),
            "failpoint": env_value("SEGMENTATION_FAILPOINT", str),
        }
        return cls(**{k: v for k, v in values.items() if v is not None})

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
