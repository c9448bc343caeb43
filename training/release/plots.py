"""Plots for the training report, returned as base64 PNG strings (``<img src="data:...">``).

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas, never
through ``pyplot``: no global state, no display, safe in threads and in the retrain
function. The report embeds the strings, so it opens offline.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training.clustering.candidates import CandidateScore
from training.clustering.stability import StabilityResult

_BAND_COLOURS = ((0.0, 0.6, "#f4cccc"), (0.6, 0.75, "#fce5cd"), (0.75, 0.85, "#fff2cc"))
_HIGH_BAND = (0.85, 1.0, "#d9ead3")


def figure_to_base64(fig: Figure, dpi: int = 100) -> str:
    """PNG bytes of ``fig``, base64-encoded (ASCII)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_k_sweep(scores: Sequence[CandidateScore], chosen_k: int | None = None) -> str:
    """Elbow (inertia), silhouette, Calinski-Harabasz and Davies-Bouldin against k."""
    ks = [s.n_segments for s in scores]
    fig = Figure(figsize=(10, 6.5))
    panels = (
        ("inertia", "Inertia (elbow), fit sample"),
        ("silhouette", "Silhouette (higher is better)"),
        ("calinski_harabasz", "Calinski-Harabasz (higher is better)"),
        ("davies_bouldin", "Davies-Bouldin (lower is better)"),
    )
    for i, (attr, title) in enumerate(panels):
        ax = fig.add_subplot(2, 2, i + 1)
        values = [getattr(s, attr) for s in scores]
        ax.plot(ks, values, marker="o", color="#3c78d8")
        bad = [(k, v) for k, v, s in zip(ks, values, scores, strict=True) if not s.eligible]
        if bad:
            ax.scatter(*zip(*bad, strict=True), color="#cc0000", zorder=3, label="not eligible")
            ax.legend(fontsize=8)
        if chosen_k is not None:
            ax.axvline(chosen_k, color="#6aa84f", linestyle="--")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("k")
        ax.set_xticks(ks)
    fig.tight_layout()
    return figure_to_base64(fig)


def plot_algorithms(scores: Sequence[CandidateScore], chosen_label: str | None = None) -> str:
    """Silhouette of each candidate algorithm, with its bootstrap ARI written beside it."""
    labels = [s.spec.label for s in scores]
    sil = [np.nan_to_num(s.silhouette) for s in scores]
    fig = Figure(figsize=(9, 0.5 * len(scores) + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    colours = [
        "#6aa84f" if lab == chosen_label else "#3c78d8" if s.eligible else "#b7b7b7"
        for lab, s in zip(labels, scores, strict=True)
    ]
    y = np.arange(len(scores))
    ax.barh(y, sil, color=colours)
    for yi, s, v in zip(y, scores, sil, strict=True):
        note = f" ARI {s.ari_mean:.2f}, {s.n_segments} seg"
        if s.noise_share > 0:
            note += f", noise {s.noise_share:.0%}"
        ax.text(max(v, 0), yi, note, va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("silhouette of served labels (grey: not eligible, green: chosen)")
    ax.set_xlim(min(0.0, min(sil)), max(max(sil), 0.01) * 1.6)
    fig.tight_layout()
    return figure_to_base64(fig)


def plot_stability(result: StabilityResult, names: Sequence[str] | None = None) -> str:
    """Mean bootstrap Jaccard per segment over the clusterboot bands."""
    names = list(names) if names else [f"segment {s.cluster}" for s in result.segments]
    fig = Figure(figsize=(8, 0.45 * len(names) + 1.8))
    ax = fig.add_subplot(1, 1, 1)
    for lo, hi, colour in (*_BAND_COLOURS, _HIGH_BAND):
        ax.axvspan(lo, hi, color=colour, zorder=0)
    y = np.arange(len(names))
    means = [s.jaccard_mean for s in result.segments]
    ax.barh(y, means, color="#3c78d8", zorder=2)
    for yi, s in zip(y, result.segments, strict=True):
        ax.text(s.jaccard_mean, yi, f" {s.jaccard_mean:.2f} {s.band}", va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15)
    ax.set_xlabel(
        f"bootstrap Jaccard (B={result.n_boot}); ARI mean {result.ari_mean:.3f}, "
        f"min {result.ari_min:.3f}"
    )
    fig.tight_layout()
    return figure_to_base64(fig)


def plot_profile_heatmap(
    z: np.ndarray, feature_names: Sequence[str], segment_names: Sequence[str]
) -> str:
    """Segment profiles as z-scores against the whole population, features by segments."""
    z = np.asarray(z, dtype=np.float64)
    fig = Figure(figsize=(1.6 * len(segment_names) + 4, 0.32 * len(feature_names) + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    bound = max(1.0, float(np.nanmax(np.abs(z))))
    image = ax.imshow(z.T, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_yticks(range(len(feature_names)), feature_names, fontsize=8)
    ax.set_xticks(range(len(segment_names)), segment_names, fontsize=8, rotation=20, ha="right")
    for (i, j), v in np.ndenumerate(z.T):
        ax.text(j, i, f"{v:+.1f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="z-score vs all customers")
    fig.tight_layout()
    return figure_to_base64(fig)


def plot_migration(migration: Sequence[dict]) -> str:
    """The migration matrix: of each current segment's customers, the share in each new
    segment (rows sum to 1), with the counts written in the cells."""
    old = sorted({m["old_id"] for m in migration})
    new = sorted({m["new_id"] for m in migration})
    counts = np.zeros((len(old), len(new)))
    for m in migration:
        counts[old.index(m["old_id"]), new.index(m["new_id"])] = m["customers"]
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(1.1 * len(new) + 3, 0.6 * len(old) + 2))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(new)), [f"new {i}" for i in new], fontsize=8)
    ax.set_yticks(range(len(old)), [f"current {i}" for i in old], fontsize=8)
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, f"{int(n):,}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="share of the current segment's customers")
    ax.set_title("Where the current model's customers go", fontsize=10)
    fig.tight_layout()
    return figure_to_base64(fig)
