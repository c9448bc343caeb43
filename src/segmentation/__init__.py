"""Shared core: the input contract, configuration, errors, bundles, the model store and
ONNX scoring. Imports neither ``training`` nor ``functions``; the serving path needs only
this package, numpy and onnxruntime."""

from segmentation.config import Settings
from segmentation.errors import (
    ConfigError,
    FeatureBuildError,
    FeatureCompileError,
    GateFailed,
    InvalidInput,
    ModelContractError,
    ModelNotReady,
    SegmentationError,
    StoreConflict,
)
from segmentation.schema import FIELD_NAMES, FIELDS, ID_NAME

__all__ = [
    "FIELDS",
    "FIELD_NAMES",
    "ID_NAME",
    "ConfigError",
    "FeatureBuildError",
    "FeatureCompileError",
    "GateFailed",
    "InvalidInput",
    "ModelContractError",
    "ModelNotReady",
    "SegmentationError",
    "Settings",
    "StoreConflict",
]
