"""What the served segmentation says about every training customer, accumulated in chunks.

The fit sees a seeded sample; the manifest's segment sizes, shares, profiles and
explanations, the inertia and the atypical distance describe every customer. They are
accumulated here while the export gates stream every row (``training.export.gates``),
from scikit-learn's labels and centroid distances on DuckDB's features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.segments.explain import Profiles, moments_profiles
from training.segments.moments import SegmentMoments


@dataclass(frozen=True)
class Population:
    """Every training row's segment statistics (cluster index order)."""

    rows: int
    sizes: np.ndarray  # [K] customers per cluster index
    profiles: Profiles  # feature means, z-scores, SMD over every row
    inertia: float  # sum of squared distances to the nearest centroid
    nearest_distance: np.ndarray  # [N] float32: each row's distance to its nearest centroid

    def atypical_distance(self, quantile: float) -> float:
        """The nearest-centroid distance at ``quantile`` over every row."""
        return float(np.quantile(self.nearest_distance, quantile))


class PopulationStats:
    """Accumulates a `Population`: ``add`` each chunk's features, labels and distances."""

    def __init__(self, n_segments: int, feature_names: Sequence[str]) -> None:
        self.feature_names = tuple(feature_names)
        self.moments = SegmentMoments(n_segments, len(self.feature_names))
        self.inertia = 0.0
        self._nearest: list[np.ndarray] = []

    def add(self, features: np.ndarray, labels: np.ndarray, distances: np.ndarray) -> None:
        """One chunk: DuckDB's features [n, F], the cluster index [n] and the centroid
        distances [n, K] scikit-learn gives those rows."""
        self.moments.add(features, labels)
        nearest = np.min(distances, axis=1, initial=np.inf) if len(distances) else np.zeros(0)
        self.inertia += float(np.sum(np.square(nearest, dtype=np.float64)))
        self._nearest.append(nearest.astype(np.float32))

    def result(self) -> Population:
        sizes = self.moments.sizes.copy()
        nearest = np.concatenate(self._nearest) if self._nearest else np.zeros(0, np.float32)
        self._nearest = [nearest]  # the chunks' copies go
        profiles = moments_profiles(self.moments, self.feature_names)
        return Population(int(sizes.sum()), sizes, profiles, self.inertia, nearest)
