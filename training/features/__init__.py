"""Features: the raw file checked at the edge, the dbt feature layer run in-process, the
SQL->ONNX compiler (``sql_onnx``), the training rows read back from the warehouse, and
batch scoring in dbt for an explicitly named model version."""

from training.features._dbt import DBT_PROJECT_DIR
from training.features.build import (
    FEATURE_SELECTION,
    BuildResult,
    build_features,
    compiled_feature_sql,
)
from training.features.catalog import feature_descriptions, feature_names
from training.features.row_source import TrainingData
from training.features.rows import load_training_data
from training.features.scoring import SCORING_SELECTION, ScoringResult, build_scores
from training.features.warehouse import (
    FEATURE_MODEL,
    PROFILES_MODEL,
    QUARANTINE_MODEL,
    SEGMENTS_MODEL,
    STAGED_MODEL,
)

__all__ = [
    "DBT_PROJECT_DIR",
    "FEATURE_MODEL",
    "FEATURE_SELECTION",
    "PROFILES_MODEL",
    "QUARANTINE_MODEL",
    "SCORING_SELECTION",
    "SEGMENTS_MODEL",
    "STAGED_MODEL",
    "BuildResult",
    "ScoringResult",
    "TrainingData",
    "build_features",
    "build_scores",
    "compiled_feature_sql",
    "feature_descriptions",
    "feature_names",
    "load_training_data",
]
