"""Why the served segments can be trusted: stability, stable ids, names and explanations.

Two steps. `assess_trust` reads the fitted clustering's labels on the training sample and
its engineered features (all of them, in their own units, whatever subset was
clustered), and the current model's manifest when the store has one: stability (seeded
bootstrap), the segment ids (matched on the sample's profiles, since the ids are baked
into the graph the gates then check), names and explanations. `complete_trust` then
replaces the profiles, names and explanations with those of every training row, and the
share of customers keeping their id with its count over every row (`IdMigration`),
once the export's full pass has accumulated them. Returns one dataclass that the manifest
and the report both read; fits nothing that is served.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from segmentation import ModelContractError
from segmentation.bundle import load_bundle, read_manifest
from segmentation.scoring import Scorer
from segmentation.store import ModelStore
from training.clustering.stability import StabilityResult, assess_stability
from training.clustering.surrogate import ClusterSpec
from training.model.sampling import sample_rows
from training.segments.explain import (
    Profiles,
    SegmentExplanation,
    explain_profiles,
    explain_segments,
    segment_profiles,
)
from training.segments.naming import Naming, name_segments
from training.segments.population import Population
from training.segments.stable_ids import IdMatch, ids_by_size, match_segment_ids

log = logging.getLogger(__name__)

#: Rows (seeded sample) on which the chosen model's bootstrap refits run.
STABILITY_ROWS = 5_000


@dataclass(frozen=True)
class Trust:
    """Stability, ids, names and explanations of the segments (cluster index order)."""

    stability: StabilityResult
    ids: IdMatch
    matched_version: str | None  # the current model the ids were matched against
    naming: Naming
    profiles: Profiles
    explanations: tuple[SegmentExplanation, ...]
    #: The current model's scorer, when it loaded, for `IdMigration`; never serialised.
    current_scorer: Scorer | None = field(default=None, repr=False, compare=False)

    @property
    def stable_ids(self) -> np.ndarray:
        return np.asarray(self.ids.ids, dtype=np.int64)

    def ids_to_dict(self) -> dict:
        method = "matched to the current model" if self.matched_version else "first model"
        return {**self.ids.to_dict(), "method": method, "matched_version": self.matched_version}


def chosen_stability(
    spec: ClusterSpec, Z: np.ndarray, labels: np.ndarray, *, n_boot: int, seed: int
) -> StabilityResult:
    """Bootstrap ARI and per-segment Jaccard of ``spec`` on a seeded sample of ``Z``.

    The reference labels are the served model's (``labels``), so segment ``j`` of the
    result is cluster ``j`` of the served model.
    """
    rows = sample_rows(len(Z), STABILITY_ROWS, seed)
    return assess_stability(spec, Z[rows], n_boot=n_boot, random_state=seed, reference=labels[rows])


def _current_ids(
    store: ModelStore, raw: dict[str, np.ndarray] | None
) -> tuple[str, dict, np.ndarray | None, Scorer | None] | None:
    """The current version, its manifest, (when ``raw`` is given) its ids for ``raw``, and
    its scorer (None when it does not load), for the customers of every row."""
    pointer, _ = store.read_pointer()
    if pointer is None:
        return None
    manifest = read_manifest(store, pointer.version)
    row_ids = scorer = None
    if raw is not None:
        try:
            # One thread a run: the export pass scores every chunk beside other work.
            scorer = load_bundle(store, pointer).scorer
            row_ids = scorer.score(raw).segment_id
        except ModelContractError as exc:
            # The match still works from the manifest's profiles; only the share of
            # customers who keep their id is unknown.
            log.warning("current model %s not scorable: %s", pointer.version, exc)
    return pointer.version, manifest, row_ids, scorer


def match_current(
    store: ModelStore,
    profiles: Profiles,
    labels: np.ndarray,
    raw: dict[str, np.ndarray] | None = None,
) -> tuple[IdMatch, str | None]:
    """Ids for the new segments: matched to the current model's, or by size for a first.

    Profiles are compared on the features both models describe, in units of the current
    data's standard deviation (``training.stable_ids``).
    """
    match, version, _ = _match_current(store, profiles, labels, raw)
    return match, version


def _match_current(
    store: ModelStore,
    profiles: Profiles,
    labels: np.ndarray,
    raw: dict[str, np.ndarray] | None,
) -> tuple[IdMatch, str | None, Scorer | None]:
    k = len(profiles.sizes)
    current = _current_ids(store, raw)
    if current is None:
        return ids_by_size(labels, k), None, None
    version, manifest, row_ids, scorer = current
    names = profiles.feature_names
    common = [
        j for j, n in enumerate(names) if all(n in s["profile"] for s in manifest["segments"])
    ]
    if not common:
        log.warning("current model %s shares no profiled feature: fresh ids", version)
        return ids_by_size(labels, k), None, None
    old = np.array(
        [[np.nan if s["profile"][names[j]] is None else s["profile"][names[j]] for j in common]
         for s in manifest["segments"]]
    )  # fmt: skip
    match = match_segment_ids(
        old,
        [int(s["id"]) for s in manifest["segments"]],
        profiles.means[:, common],
        profiles.overall_std[common],
        old_row_ids=row_ids,
        new_row_segments=labels if row_ids is not None else None,
    )
    log.info(
        "segment ids matched to %s: %d kept, %d fresh",
        version,
        len(match.matched),
        len(match.fresh),
    )
    return match, version, scorer


def assess_trust(
    *,
    spec: ClusterSpec,
    Z: np.ndarray,
    labels: np.ndarray,
    k: int,
    X: np.ndarray,
    feature_names: tuple[str, ...],
    store: ModelStore,
    raw: dict[str, np.ndarray] | None,
    n_boot: int,
    seed: int,
) -> Trust:
    """Everything the manifest and report say about the segments of a fitted clustering.

    Parameters
    ----------
    spec : the chosen configuration (refitted on bootstrap samples).
    Z : the training rows in the clustering space; ``labels`` their served cluster index
        among ``k`` segments.
    X : the engineered features (all of them) of the same rows, named ``feature_names``.
    store : the model store; its current model, if any, anchors the ids.
    raw : staged columns of the same rows, to measure how many customers keep their id.
    n_boot : bootstrap replicates; ``seed`` seeds samples and refits.
    """
    log.info("stability of %s: %d bootstrap refits", spec.label, n_boot)
    stability = chosen_stability(spec, Z, labels, n_boot=n_boot, seed=seed)
    profiles = segment_profiles(X, labels, feature_names, k)
    ids, version, scorer = _match_current(store, profiles, labels, raw)
    naming = name_segments(profiles.z, feature_names, ids=list(ids.ids))
    explanations = explain_segments(X, labels, feature_names, k)
    return Trust(stability, ids, version, naming, profiles, explanations, scorer)


class IdMigration:
    """Where the current model's customers go, counted over every training row: ``add``
    each chunk's staged columns and the new model's cluster index, then ``apply``."""

    def __init__(self, scorer: Scorer, stable_ids: np.ndarray) -> None:
        self.scorer = scorer
        self.stable_ids = np.asarray(stable_ids, dtype=np.int64)
        self.rows = 0
        self.pairs: dict[tuple[int, int], int] = {}

    def add(self, raw: dict[str, np.ndarray], labels: np.ndarray) -> None:
        if len(labels) == 0:
            return
        old = np.asarray(self.scorer.score(raw).segment_id, dtype=np.int64)
        new = self.stable_ids[labels]
        pairs, counts = np.unique(np.column_stack([old, new]), axis=0, return_counts=True)
        for (o, n), c in zip(pairs.tolist(), counts.tolist(), strict=True):
            self.pairs[(o, n)] = self.pairs.get((o, n), 0) + c
        self.rows += len(labels)

    def apply(self, ids: IdMatch) -> IdMatch:
        """``ids`` with the keep share and the migration matrix of every row counted."""
        if not self.rows:
            return ids
        kept = sum(c for (o, n), c in self.pairs.items() if o == n)
        migration = tuple((o, n, c) for (o, n), c in sorted(self.pairs.items()))
        return replace(ids, row_keep_share=kept / self.rows, migration=migration)


def complete_trust(
    trust: Trust, population: Population, migration: IdMigration | None = None
) -> Trust:
    """``trust`` with every training row's profiles, names and explanations (and, given
    ``migration``, the customers keeping their id counted over every row); stability and
    the ids themselves stay as fitted."""
    profiles = population.profiles
    ids = trust.ids if migration is None else migration.apply(trust.ids)
    naming = name_segments(profiles.z, profiles.feature_names, ids=list(ids.ids))
    return replace(
        trust,
        ids=ids,
        naming=naming,
        profiles=profiles,
        explanations=explain_profiles(profiles),
    )
