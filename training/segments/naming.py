"""Business names for segments, from their profiles.

Scoring (recorded in the manifest as ``RULE``): each archetype is a list of terms on the
engineered features' profile z-scores (segment mean minus overall mean, over the overall
standard deviation; see ``training.explain``). A ``high`` term adds ``z``, a ``low`` term
adds ``-z``, a ``moderate`` term adds ``-|z|`` (best at the population average). The score
of a segment for an archetype is the mean of its terms over the features present (an
archetype with none of its features present is not used).

Assignment: the four core archetypes are given first, one segment each, by the Hungarian
method maximising the total score (``scipy.optimize.linear_sum_assignment``); with fewer
than four segments, the best-fitting core names are used. A core name is kept only where
its score is at least ``CORE_MIN_SCORE`` (a quarter of a standard deviation): a name the
profile does not support is worse than none. Segments left over are assigned the extra
archetypes the same way, where the score is at least ``EXTRA_MIN_SCORE``; any other
segment is named ``"Segment <id>: <top trait>"``, the top trait being its feature with
the largest ``|z|``. Names are therefore unique. Scores are relative to the population
being segmented: in a population without big spenders, the biggest spenders score high.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from segmentation.errors import ConfigError
from training.segments.explain import feature_phrase

#: archetype -> ((feature, "high" | "low" | "moderate"), ...)
CORE_ARCHETYPES: dict[str, tuple[tuple[str, str], ...]] = {
    "Premium High Spenders": (
        ("log_balance", "high"),
        ("log_purchases", "high"),
        ("log_credit_limit", "high"),
    ),
    "Stable Customers": (
        ("log_purchases", "moderate"),
        ("payment_consistency_index", "high"),
        ("full_payment_share", "high"),
        ("cash_advance_ratio", "low"),
    ),
    "Cash Advance Heavy Users": (
        ("cash_advance_ratio", "high"),
        ("cash_advance_frequency", "high"),
        ("log_cash_advance", "high"),
    ),
    "Low Engagement Users": (
        ("purchases_frequency", "low"),
        ("log_purchases", "low"),
        ("balance_frequency", "low"),
        ("cash_advance_frequency", "low"),
    ),
}
EXTRA_ARCHETYPES: dict[str, tuple[tuple[str, str], ...]] = {
    "Installment Shoppers": (
        ("installment_purchase_share", "high"),
        ("purchases_installments_frequency", "high"),
    ),
    "High Balance Revolvers": (
        ("credit_utilization_ratio", "high"),
        ("log_balance", "high"),
        ("full_payment_share", "low"),
    ),
    "Full Payers": (
        ("full_payment_share", "high"),
        ("payment_to_minimum_ratio", "high"),
    ),
    "One-off Big Spenders": (
        ("oneoff_purchase_share", "high"),
        ("average_ticket", "high"),
    ),
    "Everyday Shoppers": (
        ("log_purchases", "high"),
        ("log_cash_advance", "low"),
        ("cash_advance_ratio", "low"),
    ),
}
#: Below these scores (in standard deviations) the name would mislead: the segment does
#: not have the archetype's traits. Extras need clearer evidence than the core names.
CORE_MIN_SCORE = 0.25
EXTRA_MIN_SCORE = 0.5
RULE = __doc__.split("Scoring (recorded in the manifest as ``RULE``): ", 1)[1].strip()


@dataclass(frozen=True)
class SegmentName:
    """The name given to one segment and why."""

    segment: int
    name: str
    archetype: str | None
    score: float | None
    top_trait: str

    def to_dict(self) -> dict:
        score = None if self.score is None else round(self.score, 6)
        return {**self.__dict__, "score": score}


@dataclass(frozen=True)
class Naming:
    """Names of every segment (index order) and the archetype score table."""

    names: tuple[SegmentName, ...]
    scores: dict[str, tuple[float, ...]]

    def to_dict(self) -> dict:
        return {
            "rule": RULE,
            "segments": [n.to_dict() for n in self.names],
            "archetype_scores": {
                a: [None if not np.isfinite(v) else round(v, 6) for v in vals]
                for a, vals in self.scores.items()
            },
        }


def archetype_scores(
    z: np.ndarray, feature_names: Sequence[str], archetypes: dict[str, tuple[tuple[str, str], ...]]
) -> dict[str, np.ndarray]:
    """Score of every segment (rows of ``z``) for every archetype; ``-inf`` if unusable."""
    index = {name: i for i, name in enumerate(feature_names)}
    out = {}
    for archetype, terms in archetypes.items():
        cols = []
        for feature, kind in terms:
            if feature not in index:
                continue
            col = z[:, index[feature]]
            cols.append(col if kind == "high" else -col if kind == "low" else -np.abs(col))
        out[archetype] = np.mean(cols, axis=0) if cols else np.full(len(z), -np.inf)
    return out


def _assign(scores: dict[str, np.ndarray], rows: list[int]) -> list[tuple[int, str, float]]:
    usable = [a for a, s in scores.items() if np.isfinite(s).all()]
    if not rows or not usable:
        return []
    gain = np.array([[scores[a][r] for a in usable] for r in rows])
    r_idx, c_idx = linear_sum_assignment(gain, maximize=True)
    return [(rows[r], usable[c], float(gain[r, c])) for r, c in zip(r_idx, c_idx, strict=True)]


def top_trait(z_row: np.ndarray, feature_names: Sequence[str]) -> str:
    """``"high cash advance frequency"``: the feature furthest from the average."""
    i = int(np.argmax(np.abs(z_row)))
    return f"{'high' if z_row[i] >= 0 else 'low'} {feature_phrase(feature_names[i])}"


def name_segments(
    z: np.ndarray, feature_names: Sequence[str], *, ids: Sequence[int] | None = None
) -> Naming:
    """Unique business names for the segments whose profile z-scores are the rows of ``z``.

    Parameters
    ----------
    z : ``(k, p)`` profile z-scores (``training.explain.segment_profiles(...).z``).
    feature_names : the ``p`` engineered feature names.
    ids : segment ids used in fallback names (default: ``0..k-1``).
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != len(feature_names):
        raise ConfigError(f"z: expected shape (k, {len(feature_names)})")
    ids = list(range(len(z))) if ids is None else list(ids)
    core = archetype_scores(z, feature_names, CORE_ARCHETYPES)
    extra = archetype_scores(z, feature_names, EXTRA_ARCHETYPES)
    chosen = {r: (a, s) for r, a, s in _assign(core, list(range(len(z)))) if s >= CORE_MIN_SCORE}
    left = [r for r in range(len(z)) if r not in chosen]
    for r, a, s in _assign(extra, left):
        if s >= EXTRA_MIN_SCORE:
            chosen[r] = (a, s)
    names = []
    for r in range(len(z)):
        trait = top_trait(z[r], feature_names)
        archetype, score = chosen.get(r, (None, None))
        name = archetype or f"Segment {ids[r]}: {trait}"
        names.append(SegmentName(r, name, archetype, score, trait))
    scores = {a: tuple(float(v) for v in s) for a, s in {**core, **extra}.items()}
    return Naming(tuple(names), scores)
