"""The clustering pipeline: one function builds it, one evaluates it.

Every fitted step is exportable to ONNX (see ``training.export.fold``): the choice of
clustering features among the engineered ones, median imputation, quantile clipping
learned from the training data, standard scaling, PCA keeping a share of the variance,
and the clustering (KMeans, or the nearest-centroid form of the selected model; see
``training.model.steps``). Evaluation returns a plain dataclass that the manifest and the
report both read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.metrics import silhouette_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from training.model.params import DEFAULT_K, TrainingParams
from training.model.steps import ColumnSelector, QuantileClipper, resolve_columns


def build_pipeline(
    params: TrainingParams,
    feature_names: tuple[str, ...] | None = None,
    clusterer: BaseEstimator | None = None,
) -> Pipeline:
    """The unfitted pipeline: select -> impute -> clip -> scale -> PCA -> cluster, seeded.

    Parameters
    ----------
    params : the knobs; ``params.seed`` is passed to PCA and KMeans.
    feature_names : the columns of the matrix the pipeline will see, to find
        ``params.cluster_features`` among them; without names every column is clustered.
    clusterer : the final step (default: KMeans with ``params.k`` or ``DEFAULT_K``);
        training passes a `CentroidAssigner` when the selected model is a surrogate.

    Returns
    -------
    Pipeline
        Steps named ``select``, ``impute``, ``clip``, ``scale``, ``pca``, ``cluster``.
    """
    columns = resolve_columns(params.cluster_features, feature_names)
    if clusterer is None:
        clusterer = KMeans(
            n_clusters=params.k or DEFAULT_K,
            n_init=params.n_init,
            max_iter=params.max_iter,
            random_state=params.seed,
        )
    return Pipeline(
        [
            ("select", ColumnSelector(columns)),
            # keep_empty_features keeps the column count fixed: the graph's F is the SQL's F.
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("clip", QuantileClipper(quantiles=tuple(params.clip_quantiles))),
            ("scale", StandardScaler()),
            (
                "pca",
                PCA(
                    n_components=params.pca_variance if params.pca_variance < 1.0 else None,
                    svd_solver="full",
                    random_state=params.seed,
                ),
            ),
            ("cluster", clusterer),
        ]
    )


@dataclass(frozen=True)
class Evaluation:
    """What the fitted pipeline says about the training data; read by manifest and report."""

    labels: np.ndarray  # cluster index (final step's) per training row, [N]
    distances: np.ndarray  # Euclidean distance to each centroid in PCA space, [N, K]
    embedding: np.ndarray  # PCA coordinates, [N, P]
    silhouette: float
    inertia: float
    n_components: int
    explained_variance: float
    atypical_distance: float

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.distances.shape[1])


def evaluate(pipeline: Pipeline, X: np.ndarray, params: TrainingParams) -> Evaluation:
    """Score the fitted ``pipeline`` on its training matrix ``X`` (seeded silhouette sample).

    Parameters
    ----------
    pipeline : a pipeline from `build_pipeline`, fitted on ``X``.
    X : the training feature matrix [N, F].
    params : knobs for the silhouette sample and the atypical quantile.
    """
    embedding = pipeline[:-1].transform(X)
    distances = pipeline[-1].transform(embedding)
    labels = distances.argmin(axis=1)
    sample = min(params.silhouette_sample, len(X))
    silhouette = (
        float(silhouette_score(embedding, labels, sample_size=sample, random_state=params.seed))
        if len(np.unique(labels)) > 1
        else float("nan")
    )
    pca = pipeline.named_steps["pca"]
    return Evaluation(
        labels=labels,
        distances=distances,
        embedding=embedding,
        silhouette=silhouette,
        inertia=float(np.sum(distances.min(axis=1) ** 2)),
        n_components=int(pca.n_components_),
        explained_variance=float(pca.explained_variance_ratio_.sum()),
        atypical_distance=float(np.quantile(distances.min(axis=1), params.atypical_quantile)),
    )
