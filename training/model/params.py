"""Every training knob in one frozen dataclass, with the defaults and their reasons."""

from __future__ import annotations

from dataclasses import dataclass

from segmentation import ConfigError, Settings

#: Clustering algorithms training can be asked for (``training.clustering``).
ALGORITHMS: tuple[str, ...] = ("kmeans", "agglomerative", "dbscan", "gmm")


#: The default clustering features: one or two per behaviour (buying, drawing cash,
#: instalments, repaying), without the near-duplicates of the full engineered set.
#: Measured on CC GENERAL (bench/real_data_selection.py, docs/benchmarks.md): with PCA
#: keeping 80% of the variance and KMeans k=4, silhouette 0.498 and bootstrap ARI 0.99,
#: against 0.267 for all 24 features. Profiles, names and drift still use all features.
BEHAVIOUR_FEATURES: tuple[str, ...] = (
    "log_purchases",
    "log_cash_advance",
    "purchases_frequency",
    "cash_advance_frequency",
    "installment_purchase_share",
    "full_payment_share",
)


#: k when selection is skipped and no k is given: the four business archetypes.
DEFAULT_K = 4


@dataclass(frozen=True)
class TrainingParams:
    """Every training knob, with the defaults the issue asks for.

    ``from_settings`` takes the ones an operator may set without code from
    :class:`segmentation.Settings` (``SEGMENTATION_K``, ``SEGMENTATION_ALGORITHM``, ...,
    and the seed).

    ``k`` and ``algorithm`` left ``None`` are chosen by ``training.clustering.selection``'s rule;
    with ``select=False`` they default to ``DEFAULT_K`` and KMeans and no sweep runs.
    """

    k: int | None = None
    algorithm: str | None = None
    #: Run the k sweep and the algorithm comparison (skipped when k and algorithm are fixed).
    select: bool = True
    #: Engineered features the clustering sees (None: all of them).
    cluster_features: tuple[str, ...] | None = BEHAVIOUR_FEATURES
    seed: int = 42
    pca_variance: float = 0.80
    clip_quantiles: tuple[float, float] = (0.005, 0.995)
    n_init: int = 10
    max_iter: int = 300
    #: Rows sampled (seeded) for the silhouette score, which is quadratic in rows.
    silhouette_sample: int = 5_000
    #: Nearest-centroid distance quantile above which a customer is flagged atypical.
    atypical_quantile: float = 0.99
    #: Bootstrap replicates for the chosen model's stability (per-segment Jaccard, ARI).
    stability_boot: int = 20
    #: Bootstrap replicates per candidate during selection.
    selection_boot: int = 10
    #: Quantile bins per feature in the drift reference histograms.
    drift_bins: int = 10
    #: Parity gate: relative tolerance between ONNX and DuckDB features.
    feature_rtol: float = 1e-5
    #: Parity gate: share of rows whose segment must equal scikit-learn's.
    min_label_agreement: float = 0.999
    #: Parity gate: rows whose nearest/second-nearest distance margin exceeds this must
    #: agree 100%; below it float32 rounding in the folded graph may flip the tie.
    margin_epsilon: float = 1e-3
    #: ONNX opset of the exported graph (ai.onnx domain).
    target_opset: int = 17
    #: Rebuild the dbt features even when the warehouse already has them.
    rebuild_features: bool = False
    #: Make the new version current when every gate passes.
    promote: bool = True

    def __post_init__(self) -> None:
        low, high = self.clip_quantiles
        if self.k is not None and self.k < 2:
            raise ConfigError(f"k: expected at least 2 segments, found {self.k}")
        if self.algorithm is not None and self.algorithm not in ALGORITHMS:
            raise ConfigError(f"algorithm: expected one of {ALGORITHMS}, found {self.algorithm!r}")
        if self.algorithm == "dbscan" and (self.k is not None or not self.select):
            raise ConfigError("algorithm: dbscan finds its own k; expected no k and selection on")
        if self.cluster_features is not None and not self.cluster_features:
            raise ConfigError("cluster_features: expected at least one feature name, or all")
        if self.stability_boot < 2 or self.selection_boot < 2:
            raise ConfigError("stability_boot, selection_boot: expected at least 2 replicates")
        if not 0.0 < self.pca_variance <= 1.0:
            raise ConfigError(f"pca_variance: expected in (0, 1], found {self.pca_variance}")
        if not 0.0 <= low < high <= 1.0:
            raise ConfigError(f"clip_quantiles: expected 0 <= low < high <= 1, found {low, high}")
        if self.n_init < 10:
            raise ConfigError(f"n_init: expected at least 10, found {self.n_init}")

    @property
    def sweeps(self) -> bool:
        """Whether training runs the selection (not when disabled or k and algorithm fixed)."""
        return self.select and (self.k is None or self.algorithm is None)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> TrainingParams:
        """Defaults, then the settings (environment variables), then ``overrides`` (flags).

        ``None`` in the settings or in ``overrides`` means "not given": the next source
        down decides.
        """
        given = {
            "seed": settings.seed,
            "k": settings.k,
            "algorithm": settings.algorithm,
            "select": settings.select,
            "pca_variance": settings.pca_variance,
            "n_init": settings.kmeans_n_init,
            "clip_quantiles": settings.clip_quantiles,
        }
        values = {k: v for k, v in given.items() if v is not None}
        # Parsed apart: "all" parses to None (every feature), which must not read as unset.
        if settings.cluster_features is not None:
            values["cluster_features"] = parse_cluster_features(settings.cluster_features)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def parse_cluster_features(raw: str) -> tuple[str, ...] | None:
    """``"all"`` -> None (every feature); else a comma list of feature names."""
    if raw.strip().lower() == "all":
        return None
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    if not names:
        raise ConfigError("SEGMENTATION_CLUSTER_FEATURES: expected 'all' or a comma list")
    return names
