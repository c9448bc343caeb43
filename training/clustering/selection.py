"""Model selection in the clustering space: how many segments, and which algorithm.

Everything runs on seeded samples so that selection costs the same on 10 thousand or
10 million customers (sizes in :class:`SelectionConfig`, reported in the result):

- ``fit_rows`` (50,000): the k sweep's KMeans and the Gaussian mixture fit on these rows.
- ``eval_rows`` (5,000, the first rows of the same permutation): every metric (silhouette,
  Calinski-Harabasz, Davies-Bouldin, segment shares) is computed on these rows, for every
  candidate, from the labels the *served* model gives them; agglomerative (ward) and DBSCAN
  fit on them (they hold O(n^2) distances); bootstrap stability refits on them.

The rule (recorded in the manifest as ``RULE``):

1. k sweep, KMeans, k in 2..10. A k is eligible when every segment holds at least
   ``min_share`` (5%) of the rows and the mean bootstrap ARI is at least ``min_ari`` (0.80).
   The chosen k has the highest silhouette among eligible k; any k within ``tolerance``
   (0.01) of that silhouette counts as tied, and the tied k closest to ``preferred_k``
   (4, the number of business archetypes) wins, the smaller on equal distance. Real
   customer data has no sharp cluster structure and its silhouette is often flat across k
   (within 0.02 from k=2 to 8 on CC GENERAL), so the tie-break decides more often than
   not; it favours the segmentation the business can name. No eligible k: the highest
   silhouette overall.
2. At that k: KMeans, agglomerative (ward) and a Gaussian mixture, plus DBSCAN on a small
   grid (it finds its own number of clusters). Eligible: exactly k segments, each >=
   ``min_share``, noise <= ``max_noise_share``, bootstrap ARI >= ``min_ari``, surrogate
   agreement >= ``min_agreement``. The highest silhouette of the served labels wins;
   KMeans wins ties within ``tolerance`` (served exactly, cheapest to refit). Nothing
   eligible: KMeans.
3. A k or an algorithm fixed by the user replaces the corresponding step; the tables are
   still computed for the report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from segmentation.errors import ConfigError
from training.clustering.candidates import CandidateScore, SelectionConfig, score_candidate
from training.clustering.silhouette import silhouettes
from training.clustering.surrogate import ClusterSpec, fit_servable
from training.model.params import ALGORITHMS

logger = logging.getLogger(__name__)

RULE = __doc__.split("(recorded in the manifest as ``RULE``):", 1)[1].strip()


@dataclass(frozen=True)
class SelectionResult:
    """The k sweep, the algorithm comparison and the chosen configuration."""

    k_scores: tuple[CandidateScore, ...]
    algorithm_scores: tuple[CandidateScore, ...]
    chosen: ClusterSpec
    k_fixed: bool
    algorithm_fixed: bool
    config: SelectionConfig
    rows: int

    @property
    def chosen_score(self) -> CandidateScore:
        return next(s for s in self.algorithm_scores if s.spec == self.chosen)

    def to_dict(self) -> dict:
        return {
            "chosen": self.chosen.to_dict(),
            "k_fixed": self.k_fixed,
            "algorithm_fixed": self.algorithm_fixed,
            "rows": self.rows,
            "samples": {
                "fit_rows": min(self.rows, self.config.fit_rows),
                "eval_rows": min(self.rows, self.config.eval_rows),
            },
            "config": self.config.to_dict(),
            "rule": RULE,
            "k_sweep": [s.to_dict() for s in self.k_scores],
            "algorithms": [s.to_dict() for s in self.algorithm_scores],
        }


def _evaluate(
    specs: list[ClusterSpec],
    X_fit: np.ndarray,
    X_eval: np.ndarray,
    config: SelectionConfig,
    random_state: int,
    target: int | None = None,
) -> list[CandidateScore]:
    """Fit and score ``specs``; ``target`` is the k every candidate must find (default:
    its own ``n_clusters``)."""
    # Every fit here sees at most ``fit_rows`` rows: one OpenMP thread is as fast on an
    # idle machine and several times faster on a busy one (no oversubscription).
    with threadpool_limits(limits=1, user_api="openmp"):
        return _evaluate_serial(specs, X_fit, X_eval, config, random_state, target)


def _evaluate_serial(
    specs: list[ClusterSpec],
    X_fit: np.ndarray,
    X_eval: np.ndarray,
    config: SelectionConfig,
    random_state: int,
    target: int | None,
) -> list[CandidateScore]:
    fitted = []
    for i, spec in enumerate(specs, 1):
        logger.info("selection: fitting %s (%d/%d)", spec.label, i, len(specs))
        # Pairwise algorithms fit the evaluation rows; the others the larger fit sample.
        rows = X_eval if spec.algorithm in ("agglomerative", "dbscan") else X_fit
        fitted.append(fit_servable(spec, rows, random_state=random_state))
    sils = silhouettes(X_eval, [f.predict(X_eval) for f in fitted])
    scores = []
    for spec, fit, sil in zip(specs, fitted, sils, strict=True):
        logger.info("selection: scoring %s", spec.label)
        inertia = float("nan")
        if spec.algorithm == "kmeans":
            inertia = float(np.sum(np.min(fit.transform(X_fit), axis=1) ** 2))
        target_k = target or spec.n_clusters
        score = score_candidate(spec, fit, X_eval, sil, inertia, target_k, config, random_state)
        scores.append(score)
    return scores


def dbscan_grid(X_eval: np.ndarray, config: SelectionConfig) -> list[ClusterSpec]:
    """DBSCAN candidates: eps at quantiles of each row's min_samples-th neighbour distance."""
    specs = []
    for m in config.dbscan_min_samples:
        nn = NearestNeighbors(n_neighbors=min(m, len(X_eval) - 1)).fit(X_eval)
        kth = nn.kneighbors(X_eval)[0][:, -1]
        for q in config.dbscan_eps_quantiles:
            specs.append(ClusterSpec("dbscan", eps=float(np.quantile(kth, q)), min_samples=m))
    return specs


def _best(scores: list[CandidateScore], tolerance: float, prefer) -> CandidateScore | None:
    """Highest silhouette among eligible scores; ties within ``tolerance`` by ``prefer``."""
    pool = [s for s in scores if s.eligible and np.isfinite(s.silhouette)]
    if not pool:
        return None
    top = max(s.silhouette for s in pool)
    tied = [s for s in pool if s.silhouette >= top - tolerance]
    return max(tied, key=lambda s: (prefer(s), s.silhouette))


def _fallback(scores: list[CandidateScore]) -> CandidateScore:
    """When nothing is eligible: KMeans if present, else the highest silhouette."""
    kmeans = [s for s in scores if s.spec.algorithm == "kmeans"]
    finite = [s for s in kmeans or scores if np.isfinite(s.silhouette)]
    return max(finite or kmeans or scores, key=lambda s: np.nan_to_num(s.silhouette, nan=-1))


def select_model(
    X: np.ndarray,
    *,
    random_state: int,
    config: SelectionConfig | None = None,
    k: int | None = None,
    algorithm: str | None = None,
) -> SelectionResult:
    """Run the k sweep and the algorithm comparison on ``X`` and apply the rule.

    Parameters
    ----------
    X : rows in the clustering space (output of the fitted preprocessing), ``(n, d)``.
    random_state : seeds the samples, every fit and every bootstrap.
    config : candidates, sample sizes and thresholds; defaults to ``SelectionConfig()``.
    k, algorithm : fix the number of segments and/or the algorithm instead of the rule.
    """
    config = config or SelectionConfig()
    X = np.asarray(X, dtype=np.float64)
    if algorithm is not None and algorithm not in ALGORITHMS:
        raise ConfigError(f"algorithm: expected one of {ALGORITHMS}, found {algorithm!r}")
    if k is not None and k < 2:
        raise ConfigError(f"k: expected at least 2, found {k}")
    if len(X) < 10 * max(config.k_values):
        raise ConfigError(f"rows: expected at least {10 * max(config.k_values)}, found {len(X)}")
    perm = np.random.default_rng(random_state).permutation(len(X))
    X_fit = X[perm[: config.fit_rows]]
    X_eval = X[perm[: config.eval_rows]]
    logger.info("selection: k sweep on %d fit rows, %d evaluation rows", len(X_fit), len(X_eval))
    k_specs = [ClusterSpec("kmeans", kk) for kk in config.k_values]
    k_scores = _evaluate(k_specs, X_fit, X_eval, config, random_state)
    best_k = _best(
        k_scores,
        config.tolerance,
        lambda s: (-abs(s.n_segments - config.preferred_k), -s.n_segments),
    )
    if best_k is None:
        best_k = max(k_scores, key=lambda s: np.nan_to_num(s.silhouette, nan=-1))
    chosen_k = k or best_k.n_segments
    # The sweep already scored KMeans at every swept k: reuse it rather than refit.
    reused = [s for s in k_scores if s.n_segments == chosen_k and s.spec.n_clusters == chosen_k]
    specs = [ClusterSpec(a, chosen_k) for a in ("agglomerative", "gmm")]
    specs = ([] if reused else [ClusterSpec("kmeans", chosen_k)]) + specs
    specs += dbscan_grid(X_eval, config)
    algo_scores = reused + _evaluate(specs, X_fit, X_eval, config, random_state, chosen_k)
    pool = [s for s in algo_scores if algorithm is None or s.spec.algorithm == algorithm]
    best = _best(pool, config.tolerance, lambda s: s.spec.algorithm == "kmeans")
    chosen = (best or _fallback(pool)).spec
    logger.info("selection: chose %s", chosen.label)
    return SelectionResult(
        k_scores=tuple(k_scores),
        algorithm_scores=tuple(algo_scores),
        chosen=chosen,
        k_fixed=k is not None,
        algorithm_fixed=algorithm is not None,
        config=config,
        rows=len(X),
    )
