"""Fit everything a version serves and says about itself, from the training rows.

One function, shared by ``segmentation train`` (``training.train``) and
``bench/real_data_selection.py``, so the benchmark on the real data measures exactly what
training does: preprocessing (clustering features, imputation, clipping, scaling, PCA),
the model choice (``training.choose``), the evaluation and the trust assessment
(``training.trust``). Training fits on a seeded sample of the customers
(``training.model.sampling.TRAINING_SAMPLE_ROWS``); `complete_fit` then swaps in what
the export's pass measured on every row (sizes, profiles, names, inertia, atypical
distance).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sklearn.pipeline import Pipeline

from segmentation.store import ModelStore
from training.clustering.choose import Choice, choose_and_fit
from training.model.params import TrainingParams
from training.model.pipeline import Evaluation, build_pipeline, evaluate
from training.segments.population import Population
from training.segments.trust import IdMigration, Trust, assess_trust, complete_trust

if TYPE_CHECKING:  # training.train imports this module
    from training.features.row_source import TrainingData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FittedModel:
    """The served pipeline, how its clustering was chosen, its evaluation and trust."""

    pipeline: Pipeline
    choice: Choice
    evaluation: Evaluation
    trust: Trust


def fit_model(
    data: TrainingData,
    feature_names: tuple[str, ...],
    params: TrainingParams,
    store: ModelStore,
    stage: Callable[[str], None] = lambda name: log.info("train: %s", name),
) -> FittedModel:
    """Fit the preprocessing, choose and fit the clustering, evaluate, assess trust.

    The same code serves ``segmentation train`` (on its seeded sample) and
    ``bench/real_data_selection.py`` (on every row of the real file). ``store`` is read
    only: its current model, if any, anchors the segment ids.
    """
    stage(f"fit the preprocessing on {len(data.features):,} customers")
    preprocessing = build_pipeline(params, feature_names)[:-1].fit(data.features)
    Z = preprocessing.transform(data.features)
    stage(f"choose and fit the clustering in {Z.shape[1]} dimensions")
    choice = choose_and_fit(Z, params)
    pipeline = build_pipeline(params, feature_names, choice.clusterer)
    pipeline.steps[:-1] = preprocessing.steps  # the fitted steps, not refitted
    stage("evaluate")
    evaluation = evaluate(pipeline, data.features, params)
    stage("stability, stable ids, names and explanations")
    trust = assess_trust(
        spec=choice.spec,
        Z=evaluation.embedding,
        labels=evaluation.labels,
        k=choice.clusterer.n_clusters,
        X=data.features,
        feature_names=feature_names,
        store=store,
        raw=data.raw,
        n_boot=params.stability_boot,
        seed=params.seed,
    )
    return FittedModel(pipeline, choice, evaluation, trust)


def complete_fit(
    fitted: FittedModel,
    population: Population,
    params: TrainingParams,
    migration: IdMigration | None = None,
) -> FittedModel:
    """``fitted`` with every training row's statistics: the evaluation's inertia and
    atypical distance, and the trust's profiles, names, explanations and (given
    ``migration``) customers keeping their id. The fitted model itself is unchanged."""
    evaluation = replace(
        fitted.evaluation,
        inertia=population.inertia,
        atypical_distance=population.atypical_distance(params.atypical_quantile),
    )
    trust = complete_trust(fitted.trust, population, migration)
    return replace(fitted, evaluation=evaluation, trust=trust)
