"""Which clustering the version serves: run the selection rule, fit the servable model.

Works in the clustering space (the output of the fitted preprocessing). Unless the user
fixes both k and the algorithm (or turns selection off), ``training.selection``'s
documented rule picks them on seeded samples. The chosen configuration is then fitted
for serving: KMeans itself (``params.n_init`` restarts, on at most ``final_fit_rows``
rows), or for agglomerative (ward), DBSCAN and Gaussian mixtures a nearest-centroid
surrogate (`training.steps.CentroidAssigner`) whose agreement with the algorithm's own
labels is reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from training.clustering.selection import SelectionConfig, SelectionResult, select_model
from training.clustering.surrogate import ClusterSpec, fit_servable
from training.model.params import DEFAULT_K, TrainingParams
from training.model.sampling import sample_rows
from training.model.steps import CentroidAssigner

log = logging.getLogger(__name__)

#: The final KMeans fits at most this many rows (seeded sample): centroids of 200,000
#: rows in a space of a few dimensions are as good as those of millions, at a tenth of
#: the time. Every row is still assigned by the fitted model.
FINAL_FIT_ROWS = 200_000


@dataclass(frozen=True)
class Choice:
    """The chosen configuration, its fitted final step and how it is served."""

    spec: ClusterSpec
    clusterer: BaseEstimator  # fitted; has cluster_centers_, predict, transform
    selection: SelectionResult | None  # None when the sweep was skipped
    served_as: str  # "kmeans" or "nearest_centroid_surrogate"
    surrogate_agreement: float  # share of fitted rows served in their own cluster
    noise_share: float  # DBSCAN noise among the fitted rows (0 otherwise)
    fit_rows: int

    def to_dict(self) -> dict:
        return {
            **self.spec.to_dict(),
            "served_as": self.served_as,
            "surrogate_agreement": round(self.surrogate_agreement, 6),
            "noise_share": round(self.noise_share, 6),
            "fit_rows": self.fit_rows,
            "selected": self.selection is not None,
        }


def choose_and_fit(Z: np.ndarray, params: TrainingParams) -> Choice:
    """Select (unless fixed) and fit the clustering served on ``Z``.

    Parameters
    ----------
    Z : every training row in the clustering space, ``(n, d)``.
    params : ``k``, ``algorithm``, ``select``, seeds and bootstrap sizes.
    """
    selection = None
    if params.sweeps:
        log.info("selecting k and algorithm on %d rows (seeded samples)", len(Z))
        selection = select_model(
            Z,
            random_state=params.seed,
            config=SelectionConfig(n_boot=params.selection_boot),
            k=params.k,
            algorithm=params.algorithm,
        )
        spec = selection.chosen
    else:
        spec = ClusterSpec(params.algorithm or "kmeans", params.k or DEFAULT_K)
    log.info("fitting %s for serving", spec.label)
    if spec.algorithm == "kmeans":
        rows = Z[sample_rows(len(Z), FINAL_FIT_ROWS, params.seed)]
        kmeans = KMeans(
            spec.n_clusters,
            n_init=params.n_init,
            max_iter=params.max_iter,
            random_state=params.seed,
        ).fit(rows)
        return Choice(spec, kmeans, selection, "kmeans", 1.0, 0.0, len(rows))
    # The Gaussian mixture fits every row it is given: a sample keeps it bounded.
    rows = Z[sample_rows(len(Z), FINAL_FIT_ROWS, params.seed)] if spec.algorithm == "gmm" else Z
    with threadpool_limits(limits=1, user_api="openmp"):
        servable = fit_servable(spec, rows, random_state=params.seed)
    assigner = CentroidAssigner(servable.cluster_centers_).fit(servable.cluster_centers_)
    return Choice(
        spec,
        assigner,
        selection,
        "nearest_centroid_surrogate",
        servable.agreement,
        servable.noise_share,
        len(servable.labels_),
    )
