"""The training rows: DuckDB's engineered features and the staged inputs of the same customers."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np

from segmentation import FIELD_NAMES, GateFailed, Settings
from training.features.warehouse import FEATURE_MODEL, STAGED_MODEL


@dataclass(frozen=True)
class TrainingData:
    """The training rows, ordered by customer id: DuckDB's features and the staged inputs."""

    customer_ids: np.ndarray  # [N] str
    features: np.ndarray  # [N, F] float64, NULL as NaN
    raw: dict[str, np.ndarray]  # staged column -> [N] float64, NULL as NaN


def load_training_data(settings: Settings, feature_names: tuple[str, ...]) -> TrainingData:
    """Read ``customer_features`` and the staged columns of the same customers from DuckDB."""
    # Default configuration: when dbt-duckdb just built the features in this process,
    # DuckDB's instance cache refuses a connection with other settings (read_only).
    with duckdb.connect(settings.warehouse) as con:
        columns = {
            r[0]
            for r in con.execute(
                "select column_name from information_schema.columns where table_name = ?",
                [FEATURE_MODEL],
            ).fetchall()
        }
        missing = sorted(set(feature_names) - columns)
        if missing:
            raise GateFailed(
                f"{FEATURE_MODEL}: the compiled feature SQL returns {missing}, "
                "which the warehouse table lacks; rebuild the features"
            )
        select = ", ".join(
            [f"f.{n}::double as {n}" for n in feature_names]
            + [f"s.{n}::double as raw__{n}" for n in FIELD_NAMES]
        )
        arrays = con.execute(
            f"select f.customer_id::varchar as customer_id, {select} from {FEATURE_MODEL} f "
            f"join {STAGED_MODEL} s using (customer_id) order by f.customer_id"
        ).fetchnumpy()

    def column(name: str) -> np.ndarray:
        return np.ma.filled(np.ma.asarray(arrays[name], dtype=np.float64), np.nan)

    ids = np.asarray(arrays["customer_id"], dtype=str)
    if len(ids) == 0:
        raise GateFailed(f"{FEATURE_MODEL}: expected training rows, found none")
    features = np.column_stack([column(n) for n in feature_names])
    return TrainingData(ids, features, {n: column(f"raw__{n}") for n in FIELD_NAMES})
