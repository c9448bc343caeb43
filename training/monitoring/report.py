"""The drift report: a table of every signal and offline PNGs of what drifted."""

from __future__ import annotations

import html
import itertools

import numpy as np
from matplotlib.figure import Figure

from training.monitoring.current import CurrentCounts
from training.monitoring.drift import DriftResult
from training.monitoring.measures import shares
from training.release.plots import figure_to_base64

_STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;
text-align:left}th{background:#f3f3f3}img{max-width:100%}.act{color:#b00}.warn{color:#a60}"""


def _bars(title: str, labels: list[str], reference: np.ndarray, current: np.ndarray) -> str:
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(labels))
    ax.bar(x - 0.2, reference, 0.4, label="reference (training)", color="#9fc5e8")
    ax.bar(x + 0.2, current, 0.4, label="current", color="#e06666")
    ax.set_xticks(x, labels, fontsize=7, rotation=30, ha="right")
    ax.set_ylabel("share of customers")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return figure_to_base64(fig)


def _bin_labels(edges: list[float]) -> list[str]:
    if len(edges) < 2:
        return [f"{edges[0]:.3g}" if edges else "all", "null"]
    return [f"{a:.3g}-{b:.3g}" for a, b in itertools.pairwise(edges)] + ["null"]


def _histogram_png(name: str, ref: dict, counts: np.ndarray, nulls: int) -> str:
    expected = np.append(np.asarray(ref["shares"]) * (1 - ref["null_share"]), ref["null_share"])
    observed = shares(np.append(counts, nulls))
    return _bars(name, _bin_labels(ref["bin_edges"]), expected, observed)


def _img(alt: str, b64: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def build_drift_report(
    check_id: str, reference: dict, now: CurrentCounts, result: DriftResult
) -> bytes:
    """``report.html`` of one drift check (UTF-8, self-contained, aggregates only)."""
    rows = "".join(
        f'<tr class="{s.level}"><td>{html.escape(s.name)}</td><td>{s.kind}</td>'
        f"<td>{s.level}</td><td>{_fmt(s.psi)}</td><td>{_fmt(s.js_distance)}</td>"
        f"<td>{_fmt(s.max_share_change_points)}</td><td>{_fmt(s.reference)}</td>"
        f"<td>{_fmt(s.current)}</td></tr>"
        for s in result.signals
    )
    images = []
    for s in result.drifting:
        if s.kind == "feature":
            hist = now.features[s.name]
            ref = reference["features"][s.name]
            images.append(_img(s.name, _histogram_png(s.name, ref, hist.counts, hist.nulls)))
        elif s.name == "nearest_distance" and now.nearest_distance is not None:
            hist = now.nearest_distance
            png = _histogram_png(s.name, reference["nearest_distance"], hist.counts, hist.nulls)
            images.append(_img(s.name, png))
    ids = sorted({int(i) for i in reference["segment_shares"]} | set(now.segments))
    seg_ref = np.array([reference["segment_shares"].get(str(i), 0.0) for i in ids])
    seg_now = shares(np.array([now.segments.get(i, 0) for i in ids]))
    images.append(
        _img("segment shares", _bars("Segment shares", [str(i) for i in ids], seg_ref, seg_now))
    )
    if "atypical_share" in reference and now.rows:
        training, current = reference["atypical_share"], now.atypical / now.rows
        png = _bars("Atypical customers", ["atypical"], np.array([training]), np.array([current]))
        images.append(_img("atypical share", png))
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in result.notes)
    body = (
        f"<h1>Drift check {html.escape(check_id)}</h1>"
        f"<p>Model {html.escape(result.model_version)}, {result.rows:,} current customers. "
        f'Level: <b class="{result.level}">{result.level}</b> (raw {result.raw_level}; '
        f"act-level in {result.persisted_checks} consecutive check(s)).</p>{notes}"
        "<table><thead><tr><th>signal</th><th>kind</th><th>level</th><th>PSI</th>"
        "<th>JS distance</th><th>max share change (points)</th><th>reference</th>"
        f"<th>current</th></tr></thead><tbody>{rows}</tbody></table>" + "".join(images)
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Drift {html.escape(check_id)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    ).encode()
