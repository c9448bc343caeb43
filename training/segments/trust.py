"""Why the served segments can be trusted: stability, stable ids, names and explanations.

Reads the fitted clustering's labels on every training row and the engineered features
(all of them, in their own units, whatever subset was clustered), and the current model's
manifest when the store has one. Returns one dataclass that the manifest and the report
both read; fits nothing that is served.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from segmentation import ModelContractError
from segmentation.bundle import load_bundle, read_manifest
from segmentation.store import ModelStore
from training.clustering.stability import StabilityResult, assess_stability
from training.clustering.surrogate import ClusterSpec
from training.model.sampling import sample_rows
from training.segments.explain import (
    Profiles,
    SegmentExplanation,
    explain_segments,
    segment_profiles,
)
from training.segments.naming import Naming, name_segments
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
) -> tuple[str, dict, np.ndarray | None] | None:
    """The current version, its manifest and (when ``raw`` is given) its ids for ``raw``."""
    pointer, _ = store.read_pointer()
    if pointer is None:
        return None
    manifest = read_manifest(store, pointer.version)
    row_ids = None
    if raw is not None:
        try:
            bundle = load_bundle(store, pointer)
            row_ids = bundle.scorer.score(raw).segment_id
        except ModelContractError as exc:
            # The match still works from the manifest's profiles; only the share of
            # customers who keep their id is unknown.
            log.warning("current model %s not scorable: %s", pointer.version, exc)
    return pointer.version, manifest, row_ids


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
    k = len(profiles.sizes)
    current = _current_ids(store, raw)
    if current is None:
        return ids_by_size(labels, k), None
    version, manifest, row_ids = current
    names = profiles.feature_names
    common = [
        j for j, n in enumerate(names) if all(n in s["profile"] for s in manifest["segments"])
    ]
    if not common:
        log.warning("current model %s shares no profiled feature: fresh ids", version)
        return ids_by_size(labels, k), None
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
    return match, version


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
    ids, version = match_current(store, profiles, labels, raw)
    naming = name_segments(profiles.z, feature_names, ids=list(ids.ids))
    explanations = explain_segments(X, labels, feature_names, k)
    return Trust(stability, ids, version, naming, profiles, explanations)
