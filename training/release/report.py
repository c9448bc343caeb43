"""The offline training report (``report.html``): plots as embedded PNGs, metrics tables.

Reads the manifest being built, the evaluation, the model choice and the trust assessment;
no network, no external assets. Only aggregates appear (no customer's row): the scatter
plots a seeded sample of points. Sections: segments, model selection (elbow and
silhouette by k, algorithm comparison, the rule), stability bars, the 2-D PCA scatter, the
profile heatmap, segment explanations, id matching, and the feature-set comparison
(computed by ``bench/real_data_selection.py``, too slow for every training run).
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np

# The object API renders with Agg and touches no global pyplot state (no display needed).
from matplotlib.figure import Figure

from training.clustering.choose import Choice
from training.model.pipeline import Evaluation
from training.model.sampling import sample_rows
from training.release import plots
from training.segments.trust import Trust

#: Points drawn in the PCA scatter (seeded sample): enough to see shapes, small files.
SCATTER_POINTS = 4_000


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def scatter_png(evaluation: Evaluation, segments: list[dict], seed: int) -> str:
    """2-D scatter of the first two PCA components, coloured by segment (base64 PNG)."""
    rows = sample_rows(len(evaluation.labels), SCATTER_POINTS, seed)
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


def _img(alt: str, b64: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _selection_section(choice: Choice) -> list[str]:
    result = choice.selection
    served = (
        f"<p>Served: <b>{html.escape(choice.spec.label)}</b> as "
        f"{html.escape(choice.served_as.replace('_', ' '))} (fitted on {choice.fit_rows:,} "
        f"rows); surrogate agreement with the algorithm's own labels "
        f"{choice.surrogate_agreement:.2%}, noise {choice.noise_share:.1%}.</p>"
    )
    if result is None:
        return [
            "<h2>Model selection</h2>",
            "<p>Skipped: k and the algorithm were fixed (or selection turned off).</p>",
            served,
        ]
    cols = ("inertia", "silhouette", "calinski_harabasz", "davies_bouldin", "min_share",
            "ari_mean", "ari_min", "jaccard_min")  # fmt: skip
    k_rows = [(s.n_segments, *(getattr(s, c) for c in cols), "; ".join(s.reasons) or "yes")
              for s in result.k_scores]  # fmt: skip
    a_rows = [(s.spec.label, s.n_segments, s.silhouette, s.noise_share, s.agreement, s.ari_mean,
               s.jaccard_min, s.min_share, "; ".join(s.reasons) or "yes")
              for s in result.algorithm_scores]  # fmt: skip
    fixed = [w for w, f in (("k", result.k_fixed), ("algorithm", result.algorithm_fixed)) if f]
    samples = result.to_dict()["samples"]
    return [
        "<h2>Model selection</h2>",
        f"<p>Chosen <b>{html.escape(result.chosen.label)}</b>"
        + (f" ({' and '.join(fixed)} fixed by the user)" if fixed else " by the rule")
        + f". Metrics on a seeded sample of {samples['eval_rows']:,} rows (silhouette and "
        f"bootstrap), KMeans sweep fitted on {samples['fit_rows']:,} rows.</p>",
        served,
        _img(
            "Elbow and silhouette by k", plots.plot_k_sweep(result.k_scores, choice.spec.n_clusters)
        ),
        _table(k_rows, ("k", *cols, "eligible")),
        _img(
            "Algorithm comparison",
            plots.plot_algorithms(result.algorithm_scores, choice.spec.label),
        ),
        _table(
            a_rows,
            (
                "candidate",
                "segments",
                "silhouette",
                "noise",
                "agreement",
                "ARI mean",
                "min Jaccard",
                "min share",
                "eligible",
            ),
        ),
        "<details><summary>The selection rule</summary>"
        f"<pre>{html.escape(result.to_dict()['rule'])}</pre></details>",
    ]


def build_report(manifest: dict, evaluation: Evaluation, choice: Choice, trust: Trust) -> bytes:
    """The self-contained ``report.html`` for a version (UTF-8 bytes).

    Parameters
    ----------
    manifest : the manifest being built (segments, metrics, training, features).
    evaluation : the served pipeline's evaluation on the training rows (embedding, labels).
    choice : the chosen clustering (selection tables) and how it is served.
    trust : stability, ids, names, explanations (cluster index order).
    """
    segments = manifest["segments"]
    names = tuple(f["name"] for f in manifest["features"])
    seed = int(manifest["training"]["seed"])
    labels = [f"{s['id']}: {s['name']}" for s in segments]
    stab = trust.stability
    segment_rows = [
        (s["id"], s["name"], s["size"], s["share"],
         (s["stability"] or {}).get("band", "n/a"), s["description"])
        for s in segments
    ]  # fmt: skip
    explain_rows = [
        (labels[j], ", ".join(f"{f} ({e.smd[f]:+.2f} SD)" for f in e.top_features), e.description)
        for j, e in enumerate(trust.explanations)
    ]
    ids = manifest["segment_ids"]
    id_rows = [(m["segment"], m["old_id"], m["distance"]) for m in ids["matched"]]
    metric_rows = sorted(manifest["metrics"].items()) + sorted(
        (k, v) for k, v in manifest["training"].items() if k != "model"
    )
    sections = [
        f"<h1>Customer segmentation model {html.escape(manifest['version'])}</h1>",
        f"<p>Created {html.escape(manifest['created_at'])}; feature SQL sha256 "
        f"<code>{html.escape(manifest['feature_sql_sha256'])}</code>; data snapshot sha256 "
        f"<code>{html.escape(manifest['data_snapshot_sha256'])}</code>.</p>",
        "<h2>Segments</h2>",
        _table(segment_rows, ("id", "name", "customers", "share", "stability", "description")),
        f"<p>Atypical above distance {manifest['atypical_distance']:.4g} to the nearest "
        f"segment (the {manifest['atypical_quantile']:.0%} training quantile). Clustered on "
        f"{html.escape(', '.join(manifest['training']['cluster_features']))}.</p>",
        *_selection_section(choice),
        "<h2>Stability</h2>",
        f"<p>Bootstrap ({stab.n_boot} refits on {stab.rows:,} rows): adjusted Rand index mean "
        f"{stab.ari_mean:.3f}, min {stab.ari_min:.3f}. Per-segment Jaccard bands (Hennig): "
        "&lt; 0.6 unstable, 0.6-0.75 patterns, 0.75-0.85 stable, &gt; 0.85 highly stable.</p>",
        _img("Stability by segment", plots.plot_stability(stab, labels[: len(stab.segments)])),
        "<h2>Clustering space</h2>",
        _img("PCA scatter by segment", scatter_png(evaluation, segments, seed)),
        "<h2>Segment profiles</h2>",
        _img(
            "Segment profile heatmap", plots.plot_profile_heatmap(trust.profiles.z, names, labels)
        ),
        "<h2>Segment explanations</h2>",
        _table(explain_rows, ("segment", "most distinguishing features (SMD)", "description")),
        _table(
            [(n, *(s["profile"][n] for s in segments)) for n in names],
            ("feature mean", *labels),
        ),
        "<h2>Segment ids</h2>",
        f"<p>{html.escape(ids['method'])}"
        + (f" {html.escape(ids['matched_version'])}" if ids["matched_version"] else "")
        + f"; fresh ids for segments {ids['fresh']}, retired ids {ids['retired']}; customers "
        f"keeping their id: {_fmt(ids['row_keep_share'])}.</p>",
        _table(id_rows, ("segment index", "id kept", "profile distance (SD)")) if id_rows else "",
        _img("Migration matrix", plots.plot_migration(ids["migration"]))
        if ids["migration"]
        else "",
        "<h2>Feature sets</h2>",
        "<p>Which engineered features separate customers best is measured by "
        "<code>bench/real_data_selection.py</code> on the real data (recorded in "
        "<code>docs/benchmarks.md</code>); it is too slow to repeat on every training run.</p>",
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
