"""Injection of invalid rows into generated text tables, to exercise quarantine.

``dirty_fraction * n_rows`` rows (rounded) are made invalid, split over ``DIRTY_KINDS`` in
order: each kind gets ``total // 7`` rows and the first ``total % 7`` kinds one more, so
the count of every kind is a function of ``n_rows`` and ``dirty_fraction`` alone. Which
rows, which column and which bad value are drawn from the seed. Every dirty row breaks
exactly one rule, so a quarantine model can be checked kind by kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from segmentation.errors import ConfigError
from segmentation.schema import FIELDS, ID_RAW_NAME

from ._sampler import FIRST_ID, FREQUENCIES, MONEY

#: Kinds of invalid row, in the order counts are assigned (see the module docstring).
DIRTY_KINDS: dict[str, str] = {
    "null_required": "a non-nullable numeric column is empty",
    "negative_money": "a money column holds a negative amount",
    "frequency_out_of_range": "a frequency column holds a value above 2 or below 0",
    "tenure_out_of_range": "TENURE is 0 or 13",
    "non_numeric_text": "a numeric column holds text such as 'n/a'",
    "missing_id": "CUST_ID is empty",
    "duplicate_id": "CUST_ID repeats the id of another (valid) row",
}
MAX_DIRTY_FRACTION = 0.5

_REQUIRED = tuple(f.raw_name for f in FIELDS if not f.nullable)
_NUMERIC = tuple(f.raw_name for f in FIELDS)
_SIGNED_MONEY = tuple(m for m in MONEY if m in _REQUIRED)
_BAD_FREQUENCY = ("2.5", "-0.25", "3", "-1")
_BAD_TENURE = ("0", "13")
_BAD_TEXT = ("n/a", "N/A", "unknown", "#VALUE!", "1.2.3", "twelve")
#: The dirty plan's random stream, apart from every block's (block, stream) keys.
_DIRTY_STREAM = (0xD1127, 0)


def dirty_counts(n_rows: int, dirty_fraction: float) -> dict[str, int]:
    """How many rows of each kind ``dirty_fraction`` of ``n_rows`` injects.

    Parameters
    ----------
    n_rows : rows generated.
    dirty_fraction : share of rows made invalid, 0 to ``MAX_DIRTY_FRACTION``.

    Returns
    -------
    dict
        ``{kind: count}`` for every kind of ``DIRTY_KINDS``, in order.
    """
    if not 0.0 <= dirty_fraction <= MAX_DIRTY_FRACTION:
        raise ConfigError(
            f"dirty_fraction: expected a number from 0 to {MAX_DIRTY_FRACTION}, "
            f"found {dirty_fraction}"
        )
    total = round(n_rows * dirty_fraction)
    per, extra = divmod(total, len(DIRTY_KINDS))
    return {kind: per + (i < extra) for i, kind in enumerate(DIRTY_KINDS)}


@dataclass(frozen=True)
class DirtyPlan:
    """Which rows get which defect; positions are global row indices."""

    positions: np.ndarray  # int64, one per dirty row
    kinds: np.ndarray  # index into DIRTY_KINDS
    choices: np.ndarray  # uniform in [0, 1): picks the column / bad value
    amounts: np.ndarray  # negative money amounts, text
    sources: np.ndarray  # for duplicate_id: the row whose id is copied, else -1


def plan_dirty(n_rows: int, seed: int, dirty_fraction: float) -> DirtyPlan:
    """Draw the dirty rows of a data set (deterministic for the arguments)."""
    counts = list(dirty_counts(n_rows, dirty_fraction).values())
    total, n_dup = sum(counts), counts[-1]
    rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=_DIRTY_STREAM))
    )
    # Draw the duplicates' sources together with the dirty rows so they stay valid rows.
    picked = rng.choice(n_rows, size=total + n_dup, replace=False)
    positions, source_pool = picked[:total], picked[total:]
    kinds = np.repeat(np.arange(len(counts)), counts)
    sources = np.full(total, -1, dtype=np.int64)
    sources[kinds == len(counts) - 1] = source_pool
    amounts = np.rint(rng.uniform(1.0, 5000.0, total) * 100) / -100
    return DirtyPlan(
        positions=positions.astype(np.int64),
        kinds=kinds,
        choices=rng.random(total),
        amounts=np.array([f"{a:.2f}" for a in amounts], dtype=object),
        sources=sources,
    )


def _pick(options: tuple[str, ...], u: float) -> str:
    return options[int(u * len(options))]


def _edits(plan: DirtyPlan, rows: np.ndarray) -> dict[str, dict[int, str | None]]:
    """Cell edits ``{column: {global row: new text or None}}`` for the given plan rows."""
    edits: dict[str, dict[int, str | None]] = {}
    names = list(DIRTY_KINDS)
    for i in rows:
        pos, kind, u = int(plan.positions[i]), names[plan.kinds[i]], float(plan.choices[i])
        if kind == "null_required":
            column, value = _pick(_REQUIRED, u), None
        elif kind == "negative_money":
            column, value = _pick(_SIGNED_MONEY, u), plan.amounts[i]
        elif kind == "frequency_out_of_range":
            column = _pick(FREQUENCIES, u)
            value = _pick(_BAD_FREQUENCY, (u * len(FREQUENCIES)) % 1.0)
        elif kind == "tenure_out_of_range":
            column, value = "TENURE", _pick(_BAD_TENURE, u)
        elif kind == "non_numeric_text":
            column = _pick(_NUMERIC, u)
            value = _pick(_BAD_TEXT, (u * len(_NUMERIC)) % 1.0)
        elif kind == "missing_id":
            column, value = ID_RAW_NAME, None
        else:
            column = ID_RAW_NAME
            value = f"C{FIRST_ID + int(plan.sources[i])}"
        edits.setdefault(column, {})[pos] = value
    return edits


def apply_dirty(table: pa.Table, start: int, plan: DirtyPlan) -> pa.Table:
    """Apply the plan's edits that fall in rows ``start .. start + len(table)``."""
    inside = np.flatnonzero((plan.positions >= start) & (plan.positions < start + len(table)))
    for column, cells in _edits(plan, inside).items():
        local = np.array(sorted(cells)) - start
        mask = np.zeros(len(table), dtype=bool)
        mask[local] = True
        values = pa.array([cells[p + start] for p in local], type=pa.string())
        arr = table[column].combine_chunks()
        table = table.set_column(
            table.schema.get_field_index(column), column, pc.replace_with_mask(arr, mask, values)
        )
    return table
