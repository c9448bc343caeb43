"""One candidate clustering scored on the evaluation rows, and the thresholds it must meet."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

from training.clustering.stability import assess_stability
from training.clustering.surrogate import ClusterSpec, ServableClustering


@dataclass(frozen=True)
class SelectionConfig:
    """Candidates, sample sizes and thresholds of the selection rule."""

    k_values: tuple[int, ...] = tuple(range(2, 11))
    preferred_k: int = 4
    fit_rows: int = 50_000
    eval_rows: int = 5_000
    n_boot: int = 10
    #: DBSCAN grid: min_samples x eps, eps at these quantiles of the distance from each
    #: evaluation row to its min_samples-th neighbour (the "k-distance" heuristic), which
    #: keeps the grid meaningful whatever the scale and dimension of the space.
    dbscan_min_samples: tuple[int, ...] = (10, 25)
    dbscan_eps_quantiles: tuple[float, ...] = (0.6, 0.9)
    min_share: float = 0.05
    min_ari: float = 0.80
    min_agreement: float = 0.95
    max_noise_share: float = 0.10
    tolerance: float = 0.01

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class CandidateScore:
    """Metrics of one candidate on the evaluation rows, from its served labels."""

    spec: ClusterSpec
    n_segments: int
    inertia: float  # KMeans only: sum of squared distances on the fit rows (elbow); else nan
    silhouette: float
    calinski_harabasz: float
    davies_bouldin: float
    min_share: float
    noise_share: float
    agreement: float
    ari_mean: float
    ari_min: float
    jaccard_min: float
    eligible: bool
    reasons: tuple[str, ...]

    def to_dict(self) -> dict:
        out = {"label": self.spec.label, **self.spec.to_dict()}
        for name in ("n_segments", "eligible"):
            out[name] = getattr(self, name)
        for name in (
            "inertia",
            "silhouette",
            "calinski_harabasz",
            "davies_bouldin",
            "min_share",
            "noise_share",
            "agreement",
            "ari_mean",
            "ari_min",
            "jaccard_min",
        ):
            value = float(getattr(self, name))
            out[name] = None if np.isnan(value) else round(value, 6)
        out["reasons"] = list(self.reasons)
        return out


def score_candidate(
    spec: ClusterSpec,
    fitted: ServableClustering,
    X_eval: np.ndarray,
    silhouette: float,
    inertia: float,
    target_k: int,
    config: SelectionConfig,
    random_state: int,
) -> CandidateScore:
    """Metrics of ``fitted`` on ``X_eval`` from its served labels, and why it is (not)
    eligible under ``config`` when it must find ``target_k`` segments."""
    served = fitted.predict(X_eval)
    k = fitted.n_clusters
    shares = np.bincount(served, minlength=k) / len(served)
    two = k >= 2 and len(np.unique(served)) >= 2
    ch = calinski_harabasz_score(X_eval, served) if two else float("nan")
    db = davies_bouldin_score(X_eval, served) if two else float("nan")
    stab = assess_stability(spec, X_eval, n_boot=config.n_boot, random_state=random_state)
    reasons = []
    if k != target_k:
        # Step 1 decides k; DBSCAN (own k) competes only when it finds the same number.
        reasons.append(f"found {k} segment(s), expected {target_k}")
    if shares.min() < config.min_share:
        reasons.append(f"smallest segment {shares.min():.1%} < {config.min_share:.0%}")
    if fitted.noise_share > config.max_noise_share:
        reasons.append(f"noise {fitted.noise_share:.1%} > {config.max_noise_share:.0%}")
    if stab.ari_mean < config.min_ari:
        reasons.append(f"bootstrap ARI {stab.ari_mean:.3f} < {config.min_ari}")
    if fitted.agreement < config.min_agreement:
        reasons.append(f"surrogate agreement {fitted.agreement:.3f} < {config.min_agreement}")
    return CandidateScore(
        spec=spec,
        n_segments=k,
        inertia=inertia,
        silhouette=silhouette,
        calinski_harabasz=float(ch),
        davies_bouldin=float(db),
        min_share=float(shares.min()),
        noise_share=fitted.noise_share,
        agreement=fitted.agreement,
        ari_mean=stab.ari_mean,
        ari_min=stab.ari_min,
        jaccard_min=stab.jaccard_min,
        eligible=not reasons,
        reasons=tuple(reasons),
    )
