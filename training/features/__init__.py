"""Features: the raw file checked at the edge, the dbt feature layer run in-process, the
SQL->ONNX compiler (``sql_onnx``) and the training rows read back from the warehouse."""

from training.features._dbt import DBT_PROJECT_DIR
from training.features.build import (
    FEATURE_SELECTION,
    BuildResult,
    build_features,
    compiled_feature_sql,
)
from training.features.catalog import feature_descriptions, feature_names
from training.features.rows import TrainingData, load_training_data
from training.features.warehouse import FEATURE_MODEL, QUARANTINE_MODEL, STAGED_MODEL

__all__ = [
    "DBT_PROJECT_DIR",
    "FEATURE_MODEL",
    "FEATURE_SELECTION",
    "QUARANTINE_MODEL",
    "STAGED_MODEL",
    "BuildResult",
    "TrainingData",
    "build_features",
    "compiled_feature_sql",
    "feature_descriptions",
    "feature_names",
    "load_training_data",
]
