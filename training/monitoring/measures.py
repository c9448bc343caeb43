"""Effect sizes between a reference and a current distribution over the same bins.

No p-values: on a card book of millions every difference is "significant". PSI is the
industry's measure for binned shares; Jensen-Shannon distance is bounded (0..1, base 2)
and stays meaningful where PSI is weak (bins near empty, where PSI's log ratio explodes
or vanishes with the smoothing).
"""

from __future__ import annotations

import numpy as np

#: Added to every share before PSI and JS: an empty bin would make PSI infinite.
SMOOTHING = 1e-4


def _smoothed(shares: np.ndarray) -> np.ndarray:
    shares = np.asarray(shares, dtype=np.float64) + SMOOTHING
    return shares / shares.sum()


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index: sum over bins of (q - p) ln(q / p), smoothed."""
    p, q = _smoothed(reference), _smoothed(current)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2): 0 for equal distributions, 1 for disjoint ones."""
    p, q = _smoothed(reference), _smoothed(current)
    m = 0.5 * (p + q)
    divergence = 0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q * np.log2(q / m))
    return float(np.sqrt(max(divergence, 0.0)))


def shares(counts: np.ndarray) -> np.ndarray:
    """Counts as shares of their total (zeros when there are none)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def bin_counts(values: np.ndarray, edges: list[float]) -> tuple[np.ndarray, int]:
    """Counts of the finite ``values`` in the reference bins, and the non-finite count.

    The bins are ``np.histogram``'s for ``edges`` (left-closed, the last one closed),
    with values below the first edge counted in the first bin and above the last in the
    last: a reference bin grows when customers move past the training range.
    """
    finite = np.isfinite(values)
    inner = np.asarray(edges[1:-1], dtype=np.float64)
    index = np.searchsorted(inner, values[finite], side="right")
    n_bins = max(len(edges) - 1, 1)
    return np.bincount(index, minlength=n_bins)[:n_bins], int((~finite).sum())
