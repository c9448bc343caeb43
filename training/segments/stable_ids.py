"""Stable segment ids across retrains: the same behaviour keeps the same id.

KMeans numbers its clusters arbitrarily, and two fits have different PCA spaces, so new
centroids cannot be compared with old ones directly. Segments are compared by their
*profiles in the engineered-feature space* (mean of each feature over the segment's
customers; ``training.explain.segment_profiles``), standardised by one per-feature scale
(the standard deviation of the features on the current data), so both models are measured
in the same units. The distance between an old and a new segment is the root mean square
of the standardised profile differences (features missing in either profile are skipped).

Old and new segments are paired by the Hungarian method
(``scipy.optimize.linear_sum_assignment``), minimising the total distance. A pair further
apart than ``max_distance`` (default 1.0 standard deviation) is not the same behaviour: the
new segment gets a fresh id, as do new segments left over when k grows. Fresh ids start
above every old id, so an id is never given to a different behaviour. Old ids without a
partner are retired. Match quality: mean and max distance of the kept pairs and, when
the current model's ids for the current data are given, the share of customers whose id
does not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from segmentation.errors import ConfigError

DEFAULT_MAX_DISTANCE = 1.0


@dataclass(frozen=True)
class IdMatch:
    """Ids for the new segments (index order) and how well they match the old ones."""

    ids: tuple[int, ...]
    matched: tuple[tuple[int, int, float], ...]  # (new segment index, old id, distance)
    fresh: tuple[int, ...]  # new segment indices that got a fresh id
    retired: tuple[int, ...]  # old ids with no new segment
    mean_distance: float | None
    max_distance: float | None
    row_keep_share: float | None
    #: (old id, new id, customers): where the current model's customers go (the
    #: migration matrix); empty without the current model's ids for the same rows.
    migration: tuple[tuple[int, int, int], ...] = ()

    def to_dict(self) -> dict:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 6)

        return {
            "ids": list(self.ids),
            "matched": [
                {"segment": s, "old_id": o, "distance": round(d, 6)} for s, o, d in self.matched
            ],
            "fresh": list(self.fresh),
            "retired": list(self.retired),
            "mean_distance": r(self.mean_distance),
            "max_distance": r(self.max_distance),
            "row_keep_share": r(self.row_keep_share),
            "migration": [{"old_id": o, "new_id": n, "customers": c} for o, n, c in self.migration],
        }


def profile_distances(old: np.ndarray, new: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """RMS standardised difference between every old and new profile, ``(k_old, k_new)``."""
    safe = np.where(np.asarray(scale) > 0, scale, 1.0)
    diff = (old[:, None, :] - new[None, :, :]) / safe
    with np.errstate(invalid="ignore"):
        # A feature missing from a profile (NaN) is left out of that pair's mean.
        return np.sqrt(np.nanmean(diff**2, axis=2))


def match_segment_ids(
    old_profiles: np.ndarray,
    old_ids: Sequence[int],
    new_profiles: np.ndarray,
    scale: np.ndarray,
    *,
    max_distance: float = DEFAULT_MAX_DISTANCE,
    old_row_ids: np.ndarray | None = None,
    new_row_segments: np.ndarray | None = None,
) -> IdMatch:
    """Give each new segment the id of the old segment with the same behaviour.

    Parameters
    ----------
    old_profiles, new_profiles : ``(k_old, p)`` and ``(k_new, p)`` segment means of the
        same engineered features (the current model's profiles come from its manifest).
    old_ids : the current model's segment ids, one per row of ``old_profiles``.
    scale : ``(p,)`` per-feature scale, e.g. the features' standard deviation.
    max_distance : farthest pair still considered the same segment.
    old_row_ids, new_row_segments : optional, for the same customers (the current data):
        the current model's ids and the new model's segment indices; gives
        ``row_keep_share``.
    """
    old = np.asarray(old_profiles, dtype=np.float64)
    new = np.asarray(new_profiles, dtype=np.float64)
    if old.ndim != 2 or new.ndim != 2 or old.shape[1] != new.shape[1]:
        raise ConfigError("profiles: expected old and new of shape (k, p) with the same p")
    if len(old_ids) != len(old) or len(set(old_ids)) != len(old_ids):
        raise ConfigError("old_ids: expected one distinct id per old profile")
    dist = profile_distances(old, new, np.asarray(scale, dtype=np.float64))
    # An all-NaN pair cannot be compared: treat it as infinitely far apart.
    cost = np.where(np.isfinite(dist), dist, 1e12)
    rows, cols = linear_sum_assignment(cost)
    ids: list[int | None] = [None] * len(new)
    matched = []
    for r, c in zip(rows, cols, strict=True):
        if dist[r, c] <= max_distance:
            ids[c] = int(old_ids[r])
            matched.append((int(c), int(old_ids[r]), float(dist[r, c])))
    next_id = max(int(i) for i in old_ids) + 1 if len(old_ids) else 0
    fresh = []
    for c in range(len(new)):
        if ids[c] is None:
            ids[c] = next_id
            fresh.append(c)
            next_id += 1
    kept = {o for _, o, _ in matched}
    keep_share, migration = None, ()
    if old_row_ids is not None and new_row_segments is not None:
        new_row_ids = np.asarray(ids)[np.asarray(new_row_segments)]
        keep_share = float(np.mean(new_row_ids == np.asarray(old_row_ids)))
        pairs, counts = np.unique(
            np.column_stack([np.asarray(old_row_ids), new_row_ids]), axis=0, return_counts=True
        )
        migration = tuple((int(o), int(n), int(c)) for (o, n), c in zip(pairs, counts, strict=True))
    distances = [d for _, _, d in matched]
    return IdMatch(
        ids=tuple(int(i) for i in ids),
        matched=tuple(sorted(matched)),
        fresh=tuple(fresh),
        retired=tuple(int(o) for o in old_ids if int(o) not in kept),
        mean_distance=float(np.mean(distances)) if distances else None,
        max_distance=float(np.max(distances)) if distances else None,
        row_keep_share=keep_share,
        migration=migration,
    )


def ids_by_size(labels: np.ndarray, k: int) -> IdMatch:
    """A first model's ids: 0 for the largest segment, then by size (ties by index).

    Clusterers number clusters arbitrarily; sizes make the first ids reproducible.
    """
    sizes = np.bincount(labels, minlength=k)
    order = np.lexsort((np.arange(k), -sizes))
    ids = np.empty(k, dtype=np.int64)
    ids[order] = np.arange(k)
    return IdMatch(tuple(int(i) for i in ids), (), tuple(range(k)), (), None, None, None)
