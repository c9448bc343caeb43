"""The offline training report (``report.html``): plots as embedded PNGs, metrics tables.

Reads the evaluation and the manifest being built; no network, no external assets. Only
aggregates appear (no customer's row): the scatter plots a seeded sample of points.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np

# The object API renders with Agg and touches no global pyplot state (no display needed).
from matplotlib.figure import Figure

from .pipeline import Evaluation

#: Points drawn in the PCA scatter (seeded sample): enough to see shapes, small files.
SCATTER_POINTS = 4_000


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def scatter_png(evaluation: Evaluation, segments: list[dict], seed: int) -> str:
    """2-D scatter of the first two PCA components, coloured by segment (base64 PNG)."""
    rng = np.random.default_rng(seed)
    n = len(evaluation.labels)
    rows = rng.choice(n, size=min(SCATTER_POINTS, n), replace=False)
    emb = evaluation.embedding
    ys = emb[rows, 1] if emb.shape[1] > 1 else np.zeros(len(rows))
    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    for j, segment in enumerate(segments):
        mask = evaluation.labels[rows] == j
        ax.scatter(emb[rows[mask], 0], ys[mask], s=6, alpha=0.6, label=segment["name"])
    ax.set_xlabel("PCA component 1")
    ax.set_ylabel("PCA component 2")
    ax.set_title("Customers in the clustering space (sample)")
    ax.legend(markerscale=3, fontsize=8)
    return _png(fig)


def heatmap_png(segments: list[dict], feature_names: tuple[str, ...]) -> str:
    """Segment profile heatmap: each feature's segment mean standardised across segments."""
    values = np.array(
        [[np.nan if s["profile"][f] is None else s["profile"][f] for f in feature_names]
         for s in segments]
    )  # fmt: skip
    spread = np.nanstd(values, axis=0)
    z = np.nan_to_num((values - np.nanmean(values, axis=0)) / np.where(spread > 0, spread, 1))
    fig = Figure(figsize=(max(6, 0.45 * len(feature_names)), 1.2 + 0.6 * len(segments)))
    ax = fig.subplots()
    image = ax.imshow(z, cmap="RdBu_r", vmin=-2, vmax=2, aspect="auto")
    ax.set_xticks(range(len(feature_names)), feature_names, rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(len(segments)), [f"{s['id']}: {s['name']}" for s in segments])
    ax.set_title("Segment profiles (feature mean, standardised across segments)")
    fig.colorbar(image, ax=ax, fraction=0.02)
    return _png(fig)


def _table(rows: list[tuple], header: tuple) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


_STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;
text-align:left}th{background:#f3f3f3}img{max-width:100%}"""


def build_report(manifest: dict, evaluation: Evaluation) -> bytes:
    """The self-contained ``report.html`` for a version (UTF-8 bytes).

    Parameters
    ----------
    manifest : the manifest being built (segments, metrics, training, features).
    evaluation : the pipeline's evaluation on the training rows (embedding, labels).
    """
    segments = manifest["segments"]
    names = tuple(f["name"] for f in manifest["features"])
    seed = int(manifest["training"]["seed"])
    segment_rows = [(s["id"], s["name"], s["size"], s["share"], s["description"]) for s in segments]
    metric_rows = sorted(manifest["metrics"].items()) + sorted(manifest["training"].items())
    sections = [
        f"<h1>Customer segmentation model {html.escape(manifest['version'])}</h1>",
        f"<p>Created {html.escape(manifest['created_at'])}; feature SQL sha256 "
        f"<code>{html.escape(manifest['feature_sql_sha256'])}</code>; data snapshot sha256 "
        f"<code>{html.escape(manifest['data_snapshot_sha256'])}</code>.</p>",
        "<h2>Segments</h2>",
        _table(segment_rows, ("id", "name", "customers", "share", "description")),
        f"<p>Atypical above distance {manifest['atypical_distance']:.4g} to the nearest "
        f"segment (the {manifest['atypical_quantile']:.0%} training quantile).</p>",
        "<h2>Clustering space</h2>",
        f'<img alt="PCA scatter by segment" src="data:image/png;base64,'
        f'{scatter_png(evaluation, segments, seed)}">',
        "<h2>Segment profiles</h2>",
        f'<img alt="Segment profile heatmap" src="data:image/png;base64,'
        f'{heatmap_png(segments, names)}">',
        _table(
            [(n, *(s["profile"][n] for s in segments)) for n in names],
            ("feature", *(f"{s['id']}: {s['name']}" for s in segments)),
        ),
        "<h2>Metrics and training</h2>",
        _table(metric_rows, ("name", "value")),
        "<h2>Libraries</h2>",
        _table(sorted(manifest["libraries"].items()), ("library", "version")),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Segmentation {html.escape(manifest['version'])}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(sections)}</body></html>"
    ).encode()
