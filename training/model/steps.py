"""The project's own pipeline steps, each exportable to ONNX (``training.export``).

- `QuantileClipper` clips each feature to quantiles learned from the training data.
- `ColumnSelector` picks the clustering features out of the full engineered-feature
  matrix (every feature still flows into the graph's ``features`` output; only the chosen
  ones are clustered). Exported as one ``Gather(axis=1)``.
- `CentroidAssigner` serves a clustering by its centroids: nearest centre in the
  clustering space, distances to every centre. It is the final step when the chosen
  algorithm has no ``predict`` of its own (agglomerative, DBSCAN) or does not assign by
  Euclidean distance (Gaussian mixture): a nearest-centroid surrogate
  (``training.clustering.surrogate``). It converts with skl2onnx's KMeans converter, which reads
  only ``cluster_centers_``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from segmentation import ConfigError


def resolve_columns(
    wanted: Sequence[str] | None, feature_names: Sequence[str] | None
) -> tuple[int, ...] | None:
    """Indices of ``wanted`` in ``feature_names``; ``None`` (every column) when either is None.

    Raises `ConfigError` naming the clustering features that the feature model lacks.
    """
    if wanted is None or feature_names is None:
        return None
    index = {name: i for i, name in enumerate(feature_names)}
    missing = [name for name in wanted if name not in index]
    if missing:
        raise ConfigError(
            f"cluster_features: expected names of customer_features columns, found {missing} "
            "that the feature model does not return"
        )
    if len(set(wanted)) != len(wanted) or not wanted:
        raise ConfigError("cluster_features: expected at least one name, each once")
    return tuple(index[name] for name in wanted)


class ColumnSelector(TransformerMixin, BaseEstimator):
    """Keep the columns at ``columns`` (indices, in that order); ``None`` keeps every column.

    Parameters
    ----------
    columns : column indices into the full feature matrix, or None.
    """

    def __init__(self, columns: tuple[int, ...] | None = None):
        self.columns = columns

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        n = X.shape[1]
        columns = tuple(range(n)) if self.columns is None else tuple(self.columns)
        if not columns or min(columns) < 0 or max(columns) >= n:
            raise ConfigError(f"cluster_features: expected column indices below {n}")
        self.indices_ = np.asarray(columns, dtype=np.int64)
        return self

    def transform(self, X):
        check_is_fitted(self, "indices_")
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False)
        return X[:, self.indices_]

    @property
    def is_identity(self) -> bool:
        """True when every column is kept in its own order (the export skips the Gather)."""
        check_is_fitted(self, "indices_")
        return np.array_equal(self.indices_, np.arange(self.n_features_in_))


class CentroidAssigner(ClusterMixin, TransformerMixin, BaseEstimator):
    """Nearest-centroid assignment to fixed ``centers`` (a clustering's servable form).

    ``fit`` checks the width and stores the centres as ``cluster_centers_``; it learns
    nothing else, so a surrogate fitted on a sample serves every row the same way.

    Parameters
    ----------
    centers : ``(k, d)`` centroids in the clustering space.
    """

    def __init__(self, centers: np.ndarray | None = None):
        self.centers = centers

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64)
        centers = np.asarray(self.centers, dtype=np.float64)
        if centers.ndim != 2 or centers.shape[1] != X.shape[1] or len(centers) < 2:
            raise ConfigError(
                f"centers: expected at least 2 centroids of width {X.shape[1]}, "
                f"found shape {centers.shape}"
            )
        self.cluster_centers_ = centers
        self.labels_ = self.predict(X)
        return self

    @property
    def n_clusters(self) -> int:
        """Number of segments (read like ``KMeans.n_clusters``)."""
        return len(self.cluster_centers_)

    def transform(self, X):
        """Euclidean distance from each row to every centroid, ``(n, k)``."""
        check_is_fitted(self, "cluster_centers_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return nearest_centroid(X, self.cluster_centers_)[1]

    def predict(self, X):
        """Index of the nearest centroid of each row."""
        return self.transform(X).argmin(axis=1)


class QuantileClipper(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Clip each feature to bounds learned as quantiles of the training data.

    Parameters
    ----------
    quantiles : (low, high) quantiles, e.g. (0.005, 0.995).
    """

    def __init__(self, quantiles: tuple[float, float] = (0.005, 0.995)):
        self.quantiles = quantiles

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        with warnings.catch_warnings():
            # An all-NaN column has no quantile; it gets infinite bounds (clips nothing).
            warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
            lower, upper = np.nanquantile(X, list(self.quantiles), axis=0)
        self.lower_ = np.where(np.isnan(lower), -np.inf, lower)
        self.upper_ = np.where(np.isnan(upper), np.inf, upper)
        return self

    def transform(self, X):
        check_is_fitted(self, ("lower_", "upper_"))
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False)
        return np.clip(X, self.lower_, self.upper_)


_CHUNK_ROWS = 200_000


def nearest_centroid(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre and the distances to every centre, row by row."""
    labels = np.empty(len(X), dtype=np.int64)
    dist = np.empty((len(X), len(centers)))
    c2 = np.einsum("ij,ij->i", centers, centers)
    for start in range(0, len(X), _CHUNK_ROWS):
        block = X[start : start + _CHUNK_ROWS]
        sq = np.einsum("ij,ij->i", block, block)[:, None] - 2.0 * block @ centers.T + c2
        np.maximum(sq, 0.0, out=sq)  # rounding can make a tiny squared distance negative
        dist[start : start + len(block)] = np.sqrt(sq)
        labels[start : start + len(block)] = sq.argmin(axis=1)
    return labels, dist
