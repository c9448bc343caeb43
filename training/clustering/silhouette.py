"""Silhouettes of several labelings of the same rows, sharing one pass over the distances."""

from __future__ import annotations

import numpy as np
from sklearn.metrics.pairwise import euclidean_distances


def silhouettes(X: np.ndarray, labelings: list[np.ndarray], chunk: int = 1_000) -> list[float]:
    """Mean silhouette of several labelings of the same rows, sharing one distance pass.

    Same definition as ``sklearn.metrics.silhouette_score`` (singletons score 0); rows
    labelled ``-1`` (noise) are left out. Distances are computed once, in row chunks, and
    reduced for every labeling, instead of once per labeling.
    """
    onehots, totals, sizes = [], [], []
    for labels in labelings:
        kept = labels >= 0
        k = int(labels.max()) + 1 if kept.any() else 0
        onehot = np.zeros((len(labels), max(k, 1)))
        onehot[np.flatnonzero(kept), labels[kept]] = 1.0
        onehots.append(onehot)
        sizes.append(onehot.sum(axis=0))
        totals.append(np.zeros(len(labels)))
    for start in range(0, len(X), chunk):
        dist = euclidean_distances(X[start : start + chunk], X)
        for labels, onehot, size, total in zip(labelings, onehots, sizes, totals, strict=True):
            part = labels[start : start + chunk]
            sums = dist @ onehot  # sum of distances from each row to each cluster
            own = np.where(part >= 0, part, 0)
            rows = np.arange(len(part))
            own_size = size[own]
            a = sums[rows, own] / np.maximum(own_size - 1, 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                mean_other = sums / size
            mean_other[:, size == 0] = np.inf  # a centroid no evaluation row is nearest to
            mean_other[rows, own] = np.inf
            b = mean_other.min(axis=1)
            top = np.maximum(a, b)
            # Singletons and rows whose a and b are both 0 (duplicates) score 0, as in sklearn;
            # b is inf when no other cluster has rows (that labeling's result is NaN anyway).
            with np.errstate(invalid="ignore"):
                s = np.where((own_size > 1) & (top > 0), (b - a) / np.where(top > 0, top, 1), 0)
            total[start : start + chunk] = np.where(part >= 0, s, np.nan)
    out = []
    for labels, size, total in zip(labelings, sizes, totals, strict=True):
        ok = (labels >= 0) & np.isfinite(total)
        out.append(float(total[ok].mean()) if (size > 0).sum() >= 2 else float("nan"))
    return out
