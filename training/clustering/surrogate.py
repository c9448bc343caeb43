"""Servable clusterings: whatever algorithm found the segments, serving uses centroids.

The bundle contract (``docs/bundle-format.md``) serves the Euclidean distance from a
customer to every segment centroid in the clustering space, so the export needs a
``cluster_centers_`` array whichever algorithm was chosen. KMeans provides it and its
labels are exactly nearest-centroid. Agglomerative clustering and DBSCAN cannot assign new
points, and a Gaussian mixture assigns by posterior probability under per-component
covariances, not by Euclidean distance; all three are served as a *nearest-centroid
surrogate*: centroids are the cluster means of the fitted labels (DBSCAN noise excluded)
and the share of fitted rows the surrogate assigns to their original cluster is reported
as ``agreement``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import DBSCAN, AgglomerativeClustering, KMeans
from sklearn.mixture import GaussianMixture

from segmentation.errors import ConfigError
from training.model.sampling import sample_rows
from training.model.steps import nearest_centroid

ALGORITHMS: tuple[str, ...] = ("kmeans", "agglomerative", "dbscan", "gmm")
#: KMeans restarts: a few seeded restarts make refits on resamples agree with each other
#: (one restart lets a bad local optimum pass as "instability" of the segments).
KMEANS_N_INIT = 4
#: Ward linkage and DBSCAN hold O(n^2) distances; above this they fit on a seeded sample.
MAX_PAIRWISE_ROWS = 5_000


@dataclass(frozen=True)
class ClusterSpec:
    """One clustering configuration: the algorithm and its parameters."""

    algorithm: str
    n_clusters: int | None = None
    eps: float | None = None
    min_samples: int | None = None

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"algorithm: expected one of {ALGORITHMS}, found {self.algorithm!r}")
        if self.algorithm == "dbscan":
            if self.eps is None or self.eps <= 0 or not self.min_samples:
                raise ConfigError("dbscan: expected eps > 0 and min_samples >= 1")
        elif self.n_clusters is None or self.n_clusters < 2:
            raise ConfigError(f"{self.algorithm}: expected n_clusters >= 2")

    @property
    def label(self) -> str:
        if self.algorithm == "dbscan":
            return f"dbscan(eps={self.eps:.3g}, min_samples={self.min_samples})"
        return f"{self.algorithm}(k={self.n_clusters})"

    def to_dict(self) -> dict:
        out: dict = {"algorithm": self.algorithm}
        if self.algorithm == "dbscan":
            out.update(eps=float(self.eps), min_samples=int(self.min_samples))
        else:
            out["n_clusters"] = int(self.n_clusters)
        return out


def make_estimator(spec: ClusterSpec, random_state: int):
    """A fresh scikit-learn estimator for ``spec``, seeded with ``random_state``."""
    if spec.algorithm == "kmeans":
        return KMeans(spec.n_clusters, n_init=KMEANS_N_INIT, random_state=random_state)
    if spec.algorithm == "agglomerative":
        return AgglomerativeClustering(spec.n_clusters, linkage="ward")
    if spec.algorithm == "dbscan":
        return DBSCAN(eps=spec.eps, min_samples=spec.min_samples)
    return GaussianMixture(spec.n_clusters, covariance_type="full", random_state=random_state)


@dataclass(frozen=True, eq=False)
class ServableClustering:
    """A fitted clustering as serving sees it: centroids and nearest-centroid assignment.

    ``labels_`` are the algorithm's own labels on the fitted rows (renumbered 0..k-1 in
    order of first appearance, noise -1); ``fit_index`` says which rows of the input were
    fitted (``None``: all). ``agreement`` is the share of fitted non-noise rows whose
    nearest centroid is their own cluster (1.0 for KMeans).
    """

    spec: ClusterSpec
    cluster_centers_: np.ndarray
    labels_: np.ndarray
    fit_index: np.ndarray | None
    agreement: float
    noise_share: float
    is_surrogate: bool

    @property
    def n_clusters(self) -> int:
        return len(self.cluster_centers_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Segment index of each row: its nearest centroid."""
        return nearest_centroid(np.asarray(X, dtype=np.float64), self.cluster_centers_)[0]

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Euclidean distance from each row to every centroid, shape ``(n, k)``."""
        return nearest_centroid(np.asarray(X, dtype=np.float64), self.cluster_centers_)[1]

    def to_dict(self) -> dict:
        return {
            **self.spec.to_dict(),
            "n_segments": self.n_clusters,
            "served_as": "nearest_centroid_surrogate" if self.is_surrogate else "kmeans",
            "surrogate_agreement": round(self.agreement, 6),
            "noise_share": round(self.noise_share, 6),
            "fit_rows": len(self.labels_),
        }


def _compact(labels: np.ndarray) -> np.ndarray:
    """Renumber non-negative labels 0..m-1 (empty clusters vanish); noise stays -1."""
    out = np.full(labels.shape, -1, dtype=np.int64)
    kept = labels >= 0
    _, inverse = np.unique(labels[kept], return_inverse=True)
    out[kept] = inverse
    return out


def nearest_centroid_surrogate(
    X: np.ndarray, labels: np.ndarray, spec: ClusterSpec, fit_index: np.ndarray | None = None
) -> ServableClustering:
    """Serve a clustering given only its labels: centroids are the cluster means.

    Parameters
    ----------
    X : rows that were clustered, in the clustering space, shape ``(n, d)``.
    labels : the algorithm's labels for those rows; ``-1`` is noise and is excluded.
    spec : the configuration that produced the labels (recorded, not refitted).
    fit_index : rows of the caller's full input that ``X`` is (``None``: all of it).
    """
    labels = _compact(np.asarray(labels))
    kept = labels >= 0
    if not kept.any():
        raise ConfigError(f"{spec.label}: found only noise, no cluster to serve")
    k = int(labels.max()) + 1
    counts = np.bincount(labels[kept], minlength=k)
    sums = np.zeros((k, X.shape[1]))
    np.add.at(sums, labels[kept], X[kept])
    centers = sums / counts[:, None]
    assigned = nearest_centroid(X[kept], centers)[0]
    return ServableClustering(
        spec=spec,
        cluster_centers_=centers,
        labels_=labels,
        fit_index=fit_index,
        agreement=float(np.mean(assigned == labels[kept])),
        noise_share=float(1.0 - kept.mean()),
        is_surrogate=True,
    )


def fit_servable(
    spec: ClusterSpec,
    X: np.ndarray,
    *,
    random_state: int,
    max_pairwise_rows: int = MAX_PAIRWISE_ROWS,
) -> ServableClustering:
    """Fit ``spec`` on ``X`` and return it in servable (centroid) form.

    KMeans is served as itself. Agglomerative and DBSCAN fit on a seeded sample of
    ``max_pairwise_rows`` rows when ``X`` is larger (they hold O(n^2) distances); they and
    the Gaussian mixture are served as a nearest-centroid surrogate.
    """
    X = np.asarray(X, dtype=np.float64)
    fit_index = None
    if spec.algorithm in ("agglomerative", "dbscan") and len(X) > max_pairwise_rows:
        fit_index = sample_rows(len(X), max_pairwise_rows, random_state)
    rows = X if fit_index is None else X[fit_index]
    estimator = make_estimator(spec, random_state)
    if spec.algorithm == "kmeans":
        estimator.fit(rows)
        centers = np.asarray(estimator.cluster_centers_, dtype=np.float64)
        labels = np.asarray(estimator.labels_, dtype=np.int64)
        return ServableClustering(
            spec=spec,
            cluster_centers_=centers,
            labels_=labels,
            fit_index=fit_index,
            # Measured, not assumed: KMeans' final E-step makes this 1.0 up to exact ties.
            agreement=float(np.mean(nearest_centroid(rows, centers)[0] == labels)),
            noise_share=0.0,
            is_surrogate=False,
        )
    labels = estimator.fit_predict(rows)
    return nearest_centroid_surrogate(rows, labels, spec, fit_index)
