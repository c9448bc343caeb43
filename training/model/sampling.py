"""Seeded subsampling: the one way training picks a reproducible subset of rows."""

from __future__ import annotations

import numpy as np


def sample_rows(n: int, rows: int, seed: int) -> np.ndarray:
    """Sorted indices of ``min(rows, n)`` distinct rows of ``n``, chosen by ``seed``.

    All rows (``arange(n)``) when ``n <= rows``; the same seed always picks the same rows,
    and sorting keeps them in their original order.
    """
    if n <= rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, rows, replace=False))
