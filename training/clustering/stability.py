"""Bootstrap stability of a clustering: whole-partition ARI and per-segment Jaccard.

For ``B`` replicates, rows are drawn with replacement and, as in R's ``fpc::clusterboot``
(``bootmethod="boot"``, ``multipleboot=FALSE``), duplicates are dropped; the clustering is
refitted on those rows. Two measures are taken from each refit:

- **ARI**: the refit's servable model (nearest centroid; see ``training.surrogate``)
  labels *every* row of the data, compared with the reference labels by adjusted Rand
  index (rows that are noise in the reference are left out). Mean and minimum over ``B``.
- **Jaccard per segment** (Hennig 2007, ``clusterboot``): for each reference cluster
  ``C``, restricted to the resampled rows, the best Jaccard ``|C & D| / |C | D|`` over the
  refit's clusters ``D`` (noise is no cluster), 0 when nothing matches; mean over ``B``.
  Bands (Hennig): < 0.6 unstable, 0.6-0.75 shows patterns but membership is doubtful,
  0.75-0.85 stable, > 0.85 highly stable. ``dissolved`` counts replicates with Jaccard
  <= 0.5, ``recovered`` those with Jaccard > 0.75 (clusterboot's defaults).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from segmentation.errors import ConfigError
from training.clustering.surrogate import ClusterSpec, fit_servable

logger = logging.getLogger(__name__)

#: (upper bound, band) in increasing order; a value equal to a bound falls in the band above
#: it, except 0.85 which is still "stable" (Hennig: "> 0.85 highly stable").
BANDS: tuple[tuple[float, str], ...] = (
    (0.6, "unstable"),
    (0.75, "patterns"),
    (0.85, "stable"),
)
DISSOLVED_AT = 0.5
RECOVERED_ABOVE = 0.75

#: fit_predict(rows, seed) -> (labels of ``rows``, function labelling any rows)
FitPredict = Callable[[np.ndarray, int], tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]]


def jaccard_band(value: float) -> str:
    """The clusterboot band of a mean bootstrap Jaccard value."""
    if value < BANDS[0][0]:
        return "unstable"
    if value < BANDS[1][0]:
        return "patterns"
    if value <= BANDS[2][0]:
        return "stable"
    return "highly stable"


@dataclass(frozen=True)
class SegmentStability:
    """Bootstrap Jaccard of one reference cluster."""

    cluster: int
    jaccard_mean: float
    jaccard_min: float
    dissolved: int
    recovered: int
    band: str

    def to_dict(self) -> dict:
        return {
            "cluster": self.cluster,
            "jaccard_mean": round(self.jaccard_mean, 6),
            "jaccard_min": round(self.jaccard_min, 6),
            "dissolved": self.dissolved,
            "recovered": self.recovered,
            "band": self.band,
        }


@dataclass(frozen=True)
class StabilityResult:
    """Stability of one clustering configuration on ``rows`` rows over ``n_boot`` refits."""

    label: str
    rows: int
    n_boot: int
    ari_mean: float
    ari_min: float
    segments: tuple[SegmentStability, ...]

    @property
    def jaccard_min(self) -> float:
        """The least stable segment's mean Jaccard."""
        return min(s.jaccard_mean for s in self.segments)

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "rows": self.rows,
            "n_boot": self.n_boot,
            "ari_mean": round(self.ari_mean, 6),
            "ari_min": round(self.ari_min, 6),
            "segments": [s.to_dict() for s in self.segments],
        }


def clusterboot_jaccard(reference: np.ndarray, boot: np.ndarray, n_reference: int) -> np.ndarray:
    """Best Jaccard of each reference cluster with any bootstrap cluster, on the same rows.

    ``reference`` and ``boot`` label the same (resampled) rows; ``-1`` is noise in either.
    Returns an array of ``n_reference`` values (0 where a cluster has no match).
    """
    n_boot_clusters = int(boot.max()) + 1 if (boot >= 0).any() else 0
    if n_boot_clusters == 0:
        return np.zeros(n_reference)
    both = (reference >= 0) & (boot >= 0)
    inter = np.bincount(
        reference[both] * n_boot_clusters + boot[both],
        minlength=n_reference * n_boot_clusters,
    ).reshape(n_reference, n_boot_clusters)
    size_ref = np.bincount(reference[reference >= 0], minlength=n_reference)
    size_boot = np.bincount(boot[boot >= 0], minlength=n_boot_clusters)
    union = size_ref[:, None] + size_boot[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        jac = np.where(union > 0, inter / union, 0.0)  # clusterboot's zerobyzero = 0
    return jac.max(axis=1)


def bootstrap_stability(
    X: np.ndarray,
    reference: np.ndarray,
    fit_predict: FitPredict,
    *,
    n_boot: int = 20,
    random_state: int,
    label: str = "",
) -> StabilityResult:
    """Refit ``n_boot`` times on bootstrap resamples and compare with ``reference``.

    Parameters
    ----------
    X : the data, shape ``(n, d)``, in the clustering space.
    reference : labels of ``X`` from the clustering under test, ``0..k-1``, noise ``-1``.
    fit_predict : refits on given rows with a seed; returns their labels and a function
        that labels any rows (the refit's servable model).
    n_boot : number of bootstrap replicates ``B``.
    random_state : seeds the resamples and every refit.
    label : name of the configuration, for the report.
    """
    if n_boot < 2:
        raise ConfigError(f"n_boot: expected at least 2, found {n_boot}")
    reference = np.asarray(reference, dtype=np.int64)
    n_ref = int(reference.max()) + 1
    clustered = reference >= 0
    rng = np.random.default_rng(random_state)
    aris = np.empty(n_boot)
    jac = np.empty((n_boot, n_ref))
    # Refits run on a few thousand rows, where OpenMP threads cost more than they save
    # (measured: 4x slower on a busy 2-core machine); one thread per refit.
    with threadpool_limits(limits=1, user_api="openmp"):
        for b in range(n_boot):
            rows = np.unique(rng.integers(0, len(X), len(X)))
            seed = int(rng.integers(2**31 - 1))
            boot_labels, predict = fit_predict(X[rows], seed)
            jac[b] = clusterboot_jaccard(reference[rows], np.asarray(boot_labels), n_ref)
            aris[b] = adjusted_rand_score(reference[clustered], predict(X[clustered]))
            logger.debug("stability %s: replicate %d/%d ARI %.3f", label, b + 1, n_boot, aris[b])
    segments = tuple(
        SegmentStability(
            cluster=j,
            jaccard_mean=float(jac[:, j].mean()),
            jaccard_min=float(jac[:, j].min()),
            dissolved=int((jac[:, j] <= DISSOLVED_AT).sum()),
            recovered=int((jac[:, j] > RECOVERED_ABOVE).sum()),
            band=jaccard_band(float(jac[:, j].mean())),
        )
        for j in range(n_ref)
    )
    result = StabilityResult(
        label=label,
        rows=len(X),
        n_boot=n_boot,
        ari_mean=float(aris.mean()),
        ari_min=float(aris.min()),
        segments=segments,
    )
    logger.info(
        "stability %s: ARI mean %.3f min %.3f, least stable segment Jaccard %.3f",
        label,
        result.ari_mean,
        result.ari_min,
        result.jaccard_min,
    )
    return result


def spec_fit_predict(spec: ClusterSpec) -> FitPredict:
    """A :data:`FitPredict` that refits ``spec`` and labels rows by its servable model."""

    def fit_predict(rows: np.ndarray, seed: int):
        try:
            fitted = fit_servable(spec, rows, random_state=seed, max_pairwise_rows=len(rows))
        except ConfigError:
            # A refit that finds no cluster at all (DBSCAN: all noise) matches nothing.
            def no_cluster(x: np.ndarray) -> np.ndarray:
                return np.full(len(x), -1)

            return no_cluster(rows), no_cluster
        return fitted.labels_, fitted.predict

    return fit_predict


def assess_stability(
    spec: ClusterSpec,
    X: np.ndarray,
    *,
    n_boot: int = 20,
    random_state: int,
    reference: np.ndarray | None = None,
) -> StabilityResult:
    """Bootstrap stability of ``spec`` on ``X`` (pass a sample: every refit sees ``X``).

    ``reference`` defaults to ``spec`` fitted on ``X`` itself (its own labels, noise -1).
    """
    X = np.asarray(X, dtype=np.float64)
    if reference is None:
        fitted = fit_servable(spec, X, random_state=random_state, max_pairwise_rows=len(X))
        reference = fitted.labels_
    return bootstrap_stability(
        X,
        reference,
        spec_fit_predict(spec),
        n_boot=n_boot,
        random_state=random_state,
        label=spec.label,
    )
