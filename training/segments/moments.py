"""Per-segment means and variances of every feature, accumulated chunk by chunk.

Each segment keeps, per feature, the count of non-NaN values (SQL NULL is ignored, as
``np.nanmean`` does), their mean and the sum of squared deviations from it. Chunks merge
by Chan, Golub and LeVeque's parallel update, so any chunking gives the one-pass values
(up to rounding) without the cancellation of summing squares, and memory is ``(k, p)``
whatever the number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segmentation.errors import ConfigError


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations per feature (arrays of one shape)."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @property
    def var(self) -> np.ndarray:
        """Population variance (``ddof=0``, as ``np.nanvar``); NaN where nothing counted."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.m2 / self.count, np.nan)

    @property
    def means(self) -> np.ndarray:
        """The mean, NaN where nothing counted."""
        return np.where(self.count > 0, self.mean, np.nan)

    def merge(self, other: Moments) -> Moments:
        """The moments of both sets of rows together."""
        count = self.count + other.count
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(count > 0, other.count / count, 0.0)
            delta = other.mean - self.mean
            mean = self.mean + delta * share
            m2 = self.m2 + other.m2 + delta**2 * self.count * share
        return Moments(count, np.where(count > 0, mean, 0.0), np.where(count > 0, m2, 0.0))


class SegmentMoments:
    """`Moments` of every feature within each of ``n_segments`` segments; ``add`` chunks."""

    def __init__(self, n_segments: int, n_features: int) -> None:
        self.n_segments, self.n_features = n_segments, n_features
        self.sizes = np.zeros(n_segments, dtype=np.int64)  # rows, NULL or not
        zeros = np.zeros((n_segments, n_features))
        self.moments = Moments(zeros, zeros, zeros)

    def add(self, features: np.ndarray, labels: np.ndarray) -> None:
        """Add rows ``features`` [n, p] whose segments are ``labels`` [n] (0..k-1)."""
        X = np.asarray(features, dtype=np.float64)
        labels = np.asarray(labels)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ConfigError(f"features: expected {self.n_features} columns")
        if len(labels) != len(X):
            raise ConfigError("labels: expected one label per row of features")
        if len(X) == 0:
            return
        if labels.min() < 0 or labels.max() >= self.n_segments:
            raise ConfigError(f"labels: expected segment indices 0..{self.n_segments - 1}")
        k = self.n_segments
        count, mean, m2 = (np.zeros((k, self.n_features)) for _ in range(3))
        for j in range(self.n_features):  # column by column: bincount, no [n, F] temporaries
            x = X[:, j]
            valid = ~np.isnan(x)
            segment, x = (labels, x) if valid.all() else (labels[valid], x[valid])
            count[:, j] = np.bincount(segment, minlength=k)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean[:, j] = np.bincount(segment, weights=x, minlength=k) / count[:, j]
            mean[count[:, j] == 0, j] = 0.0
            deviation = x - mean[segment, j]
            m2[:, j] = np.bincount(segment, weights=deviation * deviation, minlength=k)
        self.moments = self.moments.merge(Moments(count, mean, m2))
        self.sizes += np.bincount(labels, minlength=k)

    def segment(self, j: int) -> Moments:
        m = self.moments
        return Moments(m.count[j], m.mean[j], m.m2[j])

    def total(self) -> Moments:
        """Every row's moments."""
        return self.others(-1)

    def others(self, j: int) -> Moments:
        """The moments of the rows outside segment ``j``."""
        out = Moments(*(np.zeros(self.n_features) for _ in range(3)))
        for i in range(self.n_segments):
            if i != j:
                out = out.merge(self.segment(i))
        return out
