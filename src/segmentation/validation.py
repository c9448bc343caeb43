"""Predict request JSON -> column arrays, checked against ``segmentation.schema``.

Accepted bodies (UTF-8 JSON):

- one customer: ``{"balance": 40.9, ..., "customer_id": "C10001"}``
- a batch: ``{"customers": [{...}, {...}]}`` with 1..``max_rows`` customers.

Each customer carries every field of :data:`segmentation.schema.FIELD_NAMES` (nullable
fields may be ``null`` or omitted) and optionally ``customer_id`` (a string, echoed back).
The first broken rule raises :class:`~segmentation.errors.InvalidInput` naming the field,
the rule and, for batches, the row; values are never put in the message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import orjson

from segmentation.errors import InvalidInput
from segmentation.schema import FIELDS, ID_NAME

#: Largest finite float32: larger numbers cannot be represented by the model's float math.
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Longest customer id accepted (ids are echoed, so they are bounded).
MAX_ID_LENGTH = 128
BATCH_KEY = "customers"

_MISSING = object()
_NONFINITE = object()  # stands for a NaN/Infinity token so the field can be named
_ALLOWED = frozenset(f.name for f in FIELDS) | {ID_NAME}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")


@dataclass(frozen=True)
class ParsedRequest:
    """A validated predict request: ids (None when absent) and one float64 array per field."""

    ids: list[str | None]
    columns: dict[str, np.ndarray]
    is_batch: bool

    @property
    def rows(self) -> int:
        return len(self.ids)


def _bound(x: float) -> str:
    return f"{x:g}"


# Precomputed per field: (name, nullable, minimum, maximum, is_integer, rule texts).
_SPECS = tuple(
    (
        f.name,
        f.nullable,
        f.minimum,
        f.maximum,
        f.kind == "integer",
        f"minimum {_bound(f.minimum)}",
        f"maximum {_bound(f.maximum)}",
    )
    for f in FIELDS
)


def _constant(_token: str) -> object:
    return _NONFINITE


def parse_json(body: bytes) -> object:
    """Decode the body: strict JSON, NaN/Infinity marked for rejection.

    orjson decodes valid documents (several times faster than ``json``); what it refuses
    (NaN or Infinity tokens, integers beyond 64 bits, bad UTF-8, deep nesting) is decoded
    again by ``json``, which says what is wrong: the token's field, or the body.
    Integers may arrive as ``int``: validation treats them as numbers.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body, parse_constant=_constant, parse_int=float)
    except RecursionError:
        raise InvalidInput("body", "maximum nesting depth") from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("body", "valid JSON") from None


def parse_request(body: bytes, max_rows: int) -> ParsedRequest:
    """Validate a predict body and return its columns (``NaN`` for null).

    Parameters
    ----------
    body : raw request bytes.
    max_rows : most customers accepted in one batch.

    Raises
    ------
    InvalidInput
        The first rule the body breaks, with field, rule and row (batches only).
    """
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise InvalidInput("body", "type object")
    if BATCH_KEY in doc:
        for key in doc:
            if key != BATCH_KEY:
                raise InvalidInput(_name(key), "unknown field")
        rows = doc[BATCH_KEY]
        if not isinstance(rows, list):
            raise InvalidInput(BATCH_KEY, "type array")
        if not rows:
            raise InvalidInput(BATCH_KEY, "minimum 1 row")
        if len(rows) > max_rows:
            raise InvalidInput(BATCH_KEY, f"maximum {max_rows} rows")
        is_batch = True
    else:
        rows, is_batch = [doc], False
    ids: list[str | None] = []
    values: list[list[float]] = []
    for i, row in enumerate(rows):
        where = i if is_batch else None
        if not isinstance(row, dict):
            raise InvalidInput(BATCH_KEY, "type object", where)
        ids.append(_customer_id(row, where))
        values.append(_row(row, where))
    matrix = np.array(values, dtype=np.float64).T.copy()  # [F, N], each row contiguous
    columns = {spec[0]: matrix[j] for j, spec in enumerate(_SPECS)}
    return ParsedRequest(ids=ids, columns=columns, is_batch=is_batch)


def _name(key: str) -> str:
    # Field names are echoed in errors; arbitrary client strings are not.
    return key if _SAFE_NAME.match(key) else "(unnamed)"


def _customer_id(row: dict, where: int | None) -> str | None:
    value = row.get(ID_NAME)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(ID_NAME, "type string", where)
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        raise InvalidInput(ID_NAME, f"length 1 to {MAX_ID_LENGTH}", where)
    return value


def _row(row: dict, where: int | None) -> list[float]:
    if len(row) > len(_ALLOWED) or not _ALLOWED.issuperset(row):
        for key in row:
            if key not in _ALLOWED:
                raise InvalidInput(_name(key), "unknown field", where)
    out = []
    for name, nullable, low, high, integer, low_rule, high_rule in _SPECS:
        value = row.get(name, _MISSING)
        kind = type(value)
        if kind is int:  # not bool: type(True) is bool
            value, kind = float(value), float
        if kind is float:
            # One comparison chain rejects NaN, infinities and float32 overflow.
            if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                raise InvalidInput(name, "finite float32", where)
            if value < low:
                raise InvalidInput(name, low_rule, where)
            if value > high:
                raise InvalidInput(name, high_rule, where)
            if integer and not value.is_integer():
                raise InvalidInput(name, "integer", where)
            out.append(value)
        elif value is None or value is _MISSING:
            if not nullable:
                raise InvalidInput(name, "required" if value is _MISSING else "not null", where)
            out.append(float("nan"))
        elif value is _NONFINITE:
            raise InvalidInput(name, "finite float32", where)
        else:  # bool, string, list, object
            raise InvalidInput(name, "type number", where)
    return out
