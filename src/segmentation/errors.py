"""One error hierarchy for the whole project.

Messages say what was expected and what was found, never a customer's values: they are
returned to API clients and written to logs.
"""

from __future__ import annotations


class SegmentationError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(SegmentationError):
    """A setting (environment variable or argument) is missing or malformed."""


class InvalidInput(SegmentationError):
    """A request or a data file breaks the input contract.

    Parameters
    ----------
    field : name of the offending field (or ``"body"`` for the request as a whole).
    rule : the rule that was broken, e.g. ``"minimum 0"`` or ``"required"``.
    row : index of the row in a batch, when the input is a batch.
    """

    def __init__(self, field: str, rule: str, row: int | None = None, detail: str = ""):
        self.field = field
        self.rule = rule
        self.row = row
        self.detail = detail
        where = f"row {row}, " if row is not None else ""
        super().__init__(f"{where}field '{field}': {rule}" + (f" ({detail})" if detail else ""))

    def to_dict(self) -> dict:
        out = {"field": self.field, "rule": self.rule}
        if self.row is not None:
            out["row"] = self.row
        if self.detail:
            out["detail"] = self.detail
        return out


class ModelNotReady(SegmentationError):
    """No verified model is loaded (yet): serving answers 503 with Retry-After."""

    code = "model_not_ready"


class ModelUnverified(ModelNotReady):
    """The store's current version fails verification (instances keep their old model)."""

    code = "model_unverified"


class ModelContractError(SegmentationError):
    """A model bundle fails verification: checksum, signature, golden rows or format."""


class FeatureCompileError(SegmentationError):
    """A feature's SQL uses a construct the ONNX compiler does not support."""

    def __init__(self, feature: str, construct: str, detail: str = ""):
        self.feature = feature
        self.construct = construct
        super().__init__(
            f"feature '{feature}': unsupported construct {construct}"
            + (f" ({detail})" if detail else "")
        )


class FeatureBuildError(SegmentationError):
    """``dbt build`` failed: a model errored or an error-level data test failed."""


class GateFailed(SegmentationError):
    """A quality or parity gate refused a model: nothing is published or promoted."""


class StoreConflict(SegmentationError):
    """A compare-and-swap on the model store lost: someone else moved the pointer first."""
