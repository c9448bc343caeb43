"""Realistic CC GENERAL-shaped sample customers, fitted on the published data.

The generator samples from parameters fitted once on ``../shared/data/cc_general.csv``
(``training/data/fit_generator.py`` writes ``params.json``: figures, never rows):

- an *activity pattern* per customer (which of one-off purchases, installment purchases
  and cash advance are non-zero), with the real shares, so the monetary columns are
  zero-inflated together as in the source;
- within the pattern, a Gaussian mixture of behavioural archetypes over ``log1p`` money,
  the balance as a logit share of the credit limit, log transaction counts and the
  frequencies, each archetype with its own TENURE distribution (6..12, mostly 12);
- derived consistency: PURCHASES = ONEOFF + INSTALLMENTS, frequencies on the
  months/tenure grid (balance frequency over at most 11 months) consistent with the
  transaction counts, money in cents, credit limits in steps of 50 or 500;
- the published quirks at their real shares: minimum payment missing (always when
  payments are zero), credit limit missing, balance above the limit, cash-advance
  frequency above 1 (up to 1.5), purchase totals that do not add up.

Output is deterministic for a seed: the same seed gives the same bytes whatever the
chunk size or thread count, and the first ``k`` rows of any larger data set.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ._dirty import DIRTY_KINDS, dirty_counts
from ._shift import SHIFTS, shift_customers
from ._writer import iter_tables, resolve_format, write_file

__all__ = [
    "DIRTY_KINDS",
    "SHIFTS",
    "dirty_counts",
    "generate_customers",
    "shift_customers",
    "write_customers",
]


def generate_customers(n_rows: int, seed: int = 42, dirty_fraction: float = 0.0) -> pa.Table:
    """Generate customers in memory.

    Parameters
    ----------
    n_rows : number of customers (at least 1).
    seed : random seed; the same seed gives the same table.
    dirty_fraction : share of rows made invalid (0 to 0.5), see ``DIRTY_KINDS`` and
        ``dirty_counts``.

    Returns
    -------
    pyarrow.Table
        Columns ``CUST_ID`` then ``segmentation.schema.RAW_NAMES``. Clean: ``CUST_ID``
        text ("C10001", ...), the rest float64, null where missing (``CREDIT_LIMIT``,
        ``MINIMUM_PAYMENTS``). With ``dirty_fraction > 0`` every column is text, so bad
        values such as "n/a" fit in numeric columns.
    """
    tables = list(iter_tables(n_rows, seed, dirty_fraction, text=dirty_fraction > 0))
    return pa.concat_tables(tables)


def write_customers(
    path: str | Path,
    n_rows: int,
    seed: int = 42,
    fmt: str | None = None,
    dirty_fraction: float = 0.0,
    chunk_rows: int = 1_000_000,
) -> Path:
    """Generate customers straight to a CSV or Parquet file, in bounded memory.

    Parameters
    ----------
    path : file to write; parent folders are created. Written to a temporary file beside
        it, then renamed: readers never see a half-written file.
    n_rows, seed, dirty_fraction : as for ``generate_customers``.
    fmt : "csv" or "parquet"; ``None`` infers it from the suffix (.csv, .parquet, .pq).
    chunk_rows : rows held in memory before a write, rounded up to whole row groups of
        131,072 rows. Does not change the bytes written.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    return write_file(path, n_rows, seed, resolve_format(path, fmt), dirty_fraction, chunk_rows)
