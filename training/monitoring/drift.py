"""Drift of the current customers from the served model's reference, judged by effect size.

Signals (``docs`` of each in the README's "Operating it" section):

- per feature: PSI on the reference's quantile bins (NULLs as one more bin) and the
  Jensen-Shannon distance on the same bins;
- segments: PSI over the segment shares and the largest share change in points;
- novelty: the share of customers flagged atypical against the training share (a ratio),
  and the PSI of the distance-to-nearest-segment distribution.

Each signal is ``none``, ``warn`` or ``act`` by :class:`segmentation.config.DriftThresholds`.
A check is ``act`` only when act-level drift persists for ``persistence`` consecutive
checks of the same model (counted from the drift records in the store); until then it is
reported as ``warn``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from segmentation.config import DriftThresholds
from training.monitoring.current import CurrentCounts, Histogram
from training.monitoring.measures import js_distance, psi, shares

LEVELS = ("none", "warn", "act")


def _level(value: float, warn: float, act: float) -> str:
    return "act" if value >= act else "warn" if value >= warn else "none"


@dataclass(frozen=True)
class Signal:
    """One measured difference and the level it reaches."""

    name: str  # a feature name, "segment_shares", "atypical_share" or "nearest_distance"
    kind: str  # "feature", "segments" or "novelty"
    level: str
    psi: float | None = None
    js_distance: float | None = None
    max_share_change_points: float | None = None
    reference: float | None = None  # atypical share: training's
    current: float | None = None  # atypical share: now

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class DriftResult:
    """A drift check: every signal, the raw level and the level after persistence."""

    model_version: str
    rows: int
    signals: tuple[Signal, ...]
    raw_level: str
    level: str
    persisted_checks: int  # consecutive act-level checks, this one included
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def drifting(self) -> tuple[Signal, ...]:
        return tuple(s for s in self.signals if s.level != "none")

    def to_dict(self) -> dict:
        return {
            "model_version": self.model_version,
            "rows": self.rows,
            "raw_level": self.raw_level,
            "level": self.level,
            "persisted_checks": self.persisted_checks,
            "notes": list(self.notes),
            "signals": [s.to_dict() for s in self.signals],
        }


def _with_nulls(shares_: np.ndarray, null_share: float) -> np.ndarray:
    return np.append(np.asarray(shares_) * (1.0 - null_share), null_share)


def feature_signal(name: str, ref: dict, now: Histogram, t: DriftThresholds) -> Signal:
    """PSI and Jensen-Shannon distance of one feature on the reference bins."""
    expected = _with_nulls(ref["shares"], ref["null_share"])
    observed = shares(np.append(now.counts, now.nulls))
    value, distance = psi(expected, observed), js_distance(expected, observed)
    level = max(
        _level(value, t.psi_warn, t.psi_act),
        _level(distance, t.js_warn, t.js_act),
        key=LEVELS.index,
    )
    return Signal(name, "feature", level, psi=value, js_distance=distance)


def segment_signal(reference: dict[str, float], sizes: dict[int, int], t) -> Signal:
    """PSI over segment shares and the largest share change, in percentage points."""
    ids = sorted({int(i) for i in reference} | set(sizes))
    expected = np.array([reference.get(str(i), 0.0) for i in ids])
    observed = shares(np.array([sizes.get(i, 0) for i in ids]))
    value = psi(expected, observed)
    points = float(np.abs(observed - expected).max(initial=0.0) * 100)
    level = max(
        _level(value, t.psi_warn, t.psi_act),
        _level(points, t.share_warn_points, t.share_act_points),
        key=LEVELS.index,
    )
    return Signal("segment_shares", "segments", level, psi=value, max_share_change_points=points)


def novelty_signals(reference: dict, now: CurrentCounts, t: DriftThresholds) -> list[Signal]:
    """Atypical share against training's, and the nearest-distance distribution's PSI."""
    out = []
    training = reference.get("atypical_share")
    if training is not None and now.rows:
        current = now.atypical / now.rows
        ratio = current / max(training, 1e-9)
        level = _level(ratio, t.atypical_warn_ratio, t.atypical_act_ratio)
        out.append(Signal("atypical_share", "novelty", level, reference=training, current=current))
    ref = reference.get("nearest_distance")
    if ref is not None and now.nearest_distance is not None:
        signal = feature_signal("nearest_distance", ref, now.nearest_distance, t)
        out.append(Signal(**{**asdict(signal), "kind": "novelty"}))
    return out


def measure(reference: dict, now: CurrentCounts, t: DriftThresholds) -> list[Signal]:
    """Every signal of ``now`` against a manifest's ``drift_reference``."""
    signals = [
        feature_signal(name, ref, now.features[name], t)
        for name, ref in reference["features"].items()
        if name in now.features
    ]
    signals.append(segment_signal(reference["segment_shares"], now.segments, t))
    return signals + novelty_signals(reference, now, t)


def judge(
    model_version: str,
    rows: int,
    signals: list[Signal],
    previous_raw_levels: list[str],
    t: DriftThresholds,
) -> DriftResult:
    """Apply persistence: ``act`` only after ``t.persistence`` consecutive act-level checks.

    ``previous_raw_levels`` are the raw levels of this model's earlier checks, newest last.
    """
    raw = max((s.level for s in signals), key=LEVELS.index, default="none")
    streak = 0
    if raw == "act":
        streak = 1
        for level in reversed(previous_raw_levels):
            if level != "act":
                break
            streak += 1
    level, notes = raw, []
    if raw == "act" and streak < t.persistence:
        level = "warn"
        notes.append(
            f"act-level drift in {streak} consecutive check(s); acting needs {t.persistence}"
        )
    return DriftResult(model_version, rows, tuple(signals), raw, level, streak, tuple(notes))
