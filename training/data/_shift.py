"""Known behaviour shifts applied to generated customers, to exercise drift monitoring.

Each shift changes the customers a real portfolio change would: ``cash_advance`` triples
the cash advances of a third of the customers (a stressed book), ``no_purchases`` stops
all purchasing for a quarter (cards moving to a competitor). Customers are chosen by the
seed; the result is still valid input (every rule of ``segmentation.schema`` holds).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

#: Raw columns a customer who stops buying has at zero.
_PURCHASE_COLUMNS = (
    "PURCHASES", "ONEOFF_PURCHASES", "INSTALLMENTS_PURCHASES", "PURCHASES_FREQUENCY",
    "ONEOFF_PURCHASES_FREQUENCY", "PURCHASES_INSTALLMENTS_FREQUENCY", "PURCHASES_TRX",
)  # fmt: skip
SHIFTS: dict[str, tuple[float, tuple[str, ...]]] = {
    # name: (share of customers, columns changed)
    "cash_advance": (1 / 3, ("CASH_ADVANCE",)),
    "no_purchases": (1 / 4, _PURCHASE_COLUMNS),
}


def shift_customers(table: pa.Table, shifts: tuple[str, ...], seed: int = 7) -> pa.Table:
    """``table`` (numeric, as ``generate_customers`` returns it) with ``shifts`` applied.

    Raises ``ValueError`` for an unknown shift name.
    """
    rng = np.random.default_rng(seed)
    columns = {name: table.column(name) for name in table.column_names}
    for shift in shifts:
        if shift not in SHIFTS:
            raise ValueError(f"shift: expected one of {sorted(SHIFTS)}, found {shift!r}")
        share, names = SHIFTS[shift]
        chosen = rng.random(table.num_rows) < share
        for name in names:
            values = columns[name].to_numpy(zero_copy_only=False).astype(np.float64)
            changed = values * 3.0 if shift == "cash_advance" else np.zeros_like(values)
            columns[name] = pa.array(np.where(chosen, np.round(changed, 2), values))
    return pa.table(columns)
