"""The input contract: the raw CC GENERAL columns and their staged names, types and bounds.

This module is the one place these facts live. The dbt staging model's YAML and the
OpenAPI document are generated from it (``segmentation contract``), the API validates
against it, and the exported ONNX graph takes exactly these staged names as inputs.

Two kinds of bound:
- hard bounds (``minimum``/``maximum``): a value outside them is invalid. dbt routes the row
  to quarantine with a reason, the API answers 4xx.
- expected bounds (``expected_maximum``): the business range. Real data breaks it in a few
  rows (CASH_ADVANCE_FREQUENCY up to 1.5, BALANCE above CREDIT_LIMIT), so dbt only warns.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Largest money amount accepted: far above any card account, far below float32 overflow.
MAX_AMOUNT = 1e9
#: Largest transaction count accepted.
MAX_COUNT = 1e6


@dataclass(frozen=True)
class Field:
    """One input column."""

    raw_name: str
    name: str
    kind: str  # "number" (DOUBLE) or "integer" (whole number, stored as DOUBLE in the graph)
    nullable: bool
    minimum: float
    maximum: float
    description: str
    expected_maximum: float | None = None

    @property
    def sql_type(self) -> str:
        return "double" if self.kind == "number" else "integer"

    def to_dict(self) -> dict:
        """The field as clients see it: in the manifest and the ``/model`` metadata."""
        spec = {
            "name": self.name,
            "kind": self.kind,
            "nullable": self.nullable,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "description": self.description,
        }
        if self.expected_maximum is not None:
            spec["expected_maximum"] = self.expected_maximum
        return spec


ID_RAW_NAME = "CUST_ID"
ID_NAME = "customer_id"

_AMOUNT = dict(kind="number", minimum=0.0, maximum=MAX_AMOUNT)
_FREQ = dict(kind="number", minimum=0.0, maximum=1.0)
_COUNT = dict(kind="integer", minimum=0.0, maximum=MAX_COUNT)

FIELDS: tuple[Field, ...] = (
    Field(
        "BALANCE",
        "balance",
        nullable=False,
        **_AMOUNT,
        description="Balance left on the account to make purchases.",
    ),
    Field(
        "BALANCE_FREQUENCY",
        "balance_frequency",
        nullable=False,
        **_FREQ,
        description="How frequently the balance is updated, 0 (never) to 1 (always).",
    ),
    Field(
        "PURCHASES",
        "purchases",
        nullable=False,
        **_AMOUNT,
        description="Amount of purchases made from the account.",
    ),
    Field(
        "ONEOFF_PURCHASES",
        "oneoff_purchases",
        nullable=False,
        **_AMOUNT,
        description="Largest purchase amount done in one go.",
    ),
    Field(
        "INSTALLMENTS_PURCHASES",
        "installments_purchases",
        nullable=False,
        **_AMOUNT,
        description="Amount of purchases done in installments.",
    ),
    Field(
        "CASH_ADVANCE",
        "cash_advance",
        nullable=False,
        **_AMOUNT,
        description="Cash in advance taken by the user.",
    ),
    Field(
        "PURCHASES_FREQUENCY",
        "purchases_frequency",
        nullable=False,
        **_FREQ,
        description="How frequently purchases are made, 0 (never) to 1 (every month).",
    ),
    Field(
        "ONEOFF_PURCHASES_FREQUENCY",
        "oneoff_purchases_frequency",
        nullable=False,
        **_FREQ,
        description="How frequently one-off purchases are made, 0 to 1.",
    ),
    Field(
        "PURCHASES_INSTALLMENTS_FREQUENCY",
        "purchases_installments_frequency",
        nullable=False,
        **_FREQ,
        description="How frequently purchases in installments are made, 0 to 1.",
    ),
    Field(
        "CASH_ADVANCE_FREQUENCY",
        "cash_advance_frequency",
        nullable=False,
        kind="number",
        minimum=0.0,
        maximum=2.0,
        expected_maximum=1.0,
        description="How frequently cash in advance is taken; the published data exceeds "
        "1 (up to 1.5) in a few rows, accepted with a warning.",
    ),
    Field(
        "CASH_ADVANCE_TRX",
        "cash_advance_trx",
        nullable=False,
        **_COUNT,
        description="Number of cash-advance transactions.",
    ),
    Field(
        "PURCHASES_TRX",
        "purchases_trx",
        nullable=False,
        **_COUNT,
        description="Number of purchase transactions.",
    ),
    Field(
        "CREDIT_LIMIT",
        "credit_limit",
        nullable=True,
        **_AMOUNT,
        description="Credit limit of the card; missing for a few customers (imputed).",
    ),
    Field(
        "PAYMENTS",
        "payments",
        nullable=False,
        **_AMOUNT,
        description="Amount of payments made by the user.",
    ),
    Field(
        "MINIMUM_PAYMENTS",
        "minimum_payments",
        nullable=True,
        **_AMOUNT,
        description="Minimum amount of payments due; missing for about 3.5% of customers "
        "(imputed).",
    ),
    Field(
        "PRC_FULL_PAYMENT",
        "prc_full_payment",
        nullable=False,
        **_FREQ,
        description="Share of months in which the full balance was paid, 0 to 1.",
    ),
    Field(
        "TENURE",
        "tenure",
        nullable=False,
        kind="integer",
        minimum=1.0,
        maximum=12.0,
        description="Months of credit-card service, 1 to 12.",
    ),
)

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
RAW_NAMES: tuple[str, ...] = tuple(f.raw_name for f in FIELDS)
BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
