"""Segment explanations: size, share, profile against the whole population, and a sentence.

Profiles are computed on the engineered features (the dbt ``customer_features`` columns,
in their own units), not in the clustering space, so that analysts can read them. For each
segment and feature:

- ``ratio``: segment mean / overall mean (``None`` when the overall mean is 0);
- ``z``: (segment mean - overall mean) / overall standard deviation, the profile heatmap;
- ``smd``: standardised mean difference between the segment and everyone else,
  (mean_in - mean_out) / sqrt((var_in + var_out) / 2) (Cohen's d). The features with the
  largest ``|smd|`` are the ones that most distinguish the segment; the one-line
  description is generated from the top ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segmentation.errors import ConfigError
from training.segments.moments import SegmentMoments

#: Below this |smd| a difference is not worth a word in the description.
_NOTABLE = 0.2


def feature_phrase(name: str) -> str:
    """Readable words for a feature name: ``log_cash_advance`` -> ``cash advance``."""
    return name.removeprefix("log_").replace("_", " ")


def _degree(smd: float) -> str:
    size = abs(smd)
    word = "higher" if smd > 0 else "lower"
    if size >= 1.2:
        return f"much {word}"
    if size >= 0.5:
        return word
    return f"slightly {word}"


@dataclass(frozen=True)
class SegmentExplanation:
    """What one segment looks like next to the whole population."""

    segment: int
    size: int
    share: float
    means: dict[str, float]
    ratio: dict[str, float | None]
    z: dict[str, float]
    smd: dict[str, float]
    top_features: tuple[str, ...]
    description: str

    def to_dict(self) -> dict:
        def r(d: dict) -> dict:
            return {k: None if v is None else round(float(v), 6) for k, v in d.items()}

        return {
            "segment": self.segment,
            "size": self.size,
            "share": round(self.share, 6),
            "means": r(self.means),
            "ratio_to_overall": r(self.ratio),
            "z": r(self.z),
            "smd": r(self.smd),
            "top_features": list(self.top_features),
            "description": self.description,
        }


@dataclass(frozen=True)
class Profiles:
    """Per-segment feature profiles, as arrays of shape ``(k, p)``, plus the overall stats."""

    feature_names: tuple[str, ...]
    sizes: np.ndarray
    means: np.ndarray
    overall_mean: np.ndarray
    overall_std: np.ndarray
    z: np.ndarray
    smd: np.ndarray


def segment_profiles(
    features: np.ndarray, labels: np.ndarray, feature_names: Sequence[str], n_segments: int
) -> Profiles:
    """Means, z-scores and standardised mean differences of every segment.

    Parameters
    ----------
    features : engineered features, ``(n, p)``; NaN (SQL NULL) is ignored per feature.
    labels : segment index of each row, ``0..n_segments-1``.
    feature_names : the ``p`` column names.
    n_segments : number of segments (a segment may be empty).
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2 or features.shape[1] != len(feature_names):
        raise ConfigError(f"features: expected {len(feature_names)} columns")
    if len(labels) != len(features):
        raise ConfigError("labels: expected one label per row of features")
    moments = SegmentMoments(n_segments, features.shape[1])
    moments.add(features, labels)
    return moments_profiles(moments, feature_names)


def moments_profiles(moments: SegmentMoments, feature_names: Sequence[str]) -> Profiles:
    """`segment_profiles` from moments accumulated over any number of chunks of rows."""
    overall = moments.total()
    overall_mean, overall_std = overall.means, np.sqrt(overall.var)
    safe_std = np.where(overall_std > 0, overall_std, 1.0)  # constant feature: z = 0
    sizes = moments.sizes.copy()
    k, p = moments.n_segments, moments.n_features
    means = np.full((k, p), np.nan)
    smd = np.zeros((k, p))
    with np.errstate(invalid="ignore", divide="ignore"):
        for j in range(k):
            if sizes[j] == 0 or sizes[j] == sizes.sum():
                continue
            inside, outside = moments.segment(j), moments.others(j)
            pooled = np.sqrt((inside.var + outside.var) / 2)
            means[j] = inside.means
            smd[j] = np.where(pooled > 0, (inside.means - outside.means) / pooled, 0.0)
        z = np.nan_to_num((means - overall_mean) / safe_std)
    return Profiles(tuple(feature_names), sizes, means, overall_mean, overall_std, z, smd)


def describe(
    smd_row: np.ndarray, feature_names: Sequence[str], share: float, top_n: int = 3
) -> str:
    """One line from the most distinguishing features, e.g. for a cash-advance segment:
    ``much higher cash advance ratio (+1.9 SD), lower purchases frequency (-0.8 SD); 18% of
    customers``."""
    order = np.argsort(-np.abs(smd_row))[:top_n]
    parts = [
        f"{_degree(smd_row[i])} {feature_phrase(feature_names[i])} ({smd_row[i]:+.1f} SD)"
        for i in order
        if abs(smd_row[i]) >= _NOTABLE
    ]
    head = ", ".join(parts) if parts else "close to the average customer on every feature"
    text = f"{head}; {share:.0%} of customers"
    return text[0].upper() + text[1:]


def explain_segments(
    features: np.ndarray,
    labels: np.ndarray,
    feature_names: Sequence[str],
    n_segments: int,
    *,
    top_n: int = 3,
) -> tuple[SegmentExplanation, ...]:
    """Size, share, profile and a one-line description of every segment (index order)."""
    prof = segment_profiles(features, labels, feature_names, n_segments)
    return explain_profiles(prof, top_n=top_n)


def explain_profiles(prof: Profiles, *, top_n: int = 3) -> tuple[SegmentExplanation, ...]:
    """`explain_segments` from profiles (of a sample, or of every row accumulated in chunks)."""
    feature_names = prof.feature_names
    total = max(int(prof.sizes.sum()), 1)
    out = []
    for j in range(len(prof.sizes)):
        share = float(prof.sizes[j] / total)
        order = np.argsort(-np.abs(prof.smd[j]))[:top_n]
        ratio = {
            name: (
                None
                if prof.overall_mean[i] == 0
                else float(prof.means[j, i] / prof.overall_mean[i])
            )
            for i, name in enumerate(feature_names)
        }
        out.append(
            SegmentExplanation(
                segment=j,
                size=int(prof.sizes[j]),
                share=share,
                means=dict(zip(feature_names, prof.means[j].tolist(), strict=True)),
                ratio=ratio,
                z=dict(zip(feature_names, prof.z[j].tolist(), strict=True)),
                smd=dict(zip(feature_names, prof.smd[j].tolist(), strict=True)),
                top_features=tuple(feature_names[i] for i in order),
                description=describe(prof.smd[j], feature_names, share, top_n),
            )
        )
    return tuple(out)
