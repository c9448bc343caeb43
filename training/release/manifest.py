"""The manifest of a model version (``docs/bundle-format.md``, format_version 1).

Everything here is read from the gated export, the evaluation, the model choice and the
trust assessment (stability, ids, names, explanations); this module computes only
summaries (drift reference histograms, hashes) and never refits anything.

Beyond the format's required keys, a manifest carries ``selection`` (the k sweep and
algorithm tables and the rule, or null when selection was skipped), ``stability``
(bootstrap ARI and per-segment Jaccard of the served model), ``segment_ids`` (how the
ids were matched to the previous model) and ``naming`` (the archetype scores and rule).
Each segment has ``name``, ``description``, ``profile`` (feature means), ``top_features``,
``archetype`` and ``stability``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from datetime import UTC, datetime

import numpy as np

from segmentation import FIELDS
from segmentation.bundle_format import FORMAT_VERSION
from training.clustering.choose import Choice
from training.export.gates import ExportResult
from training.features.catalog import feature_descriptions
from training.model.params import TrainingParams
from training.model.pipeline import Evaluation
from training.segments.trust import Trust

OUTPUTS = {"segment_id": "segment_id", "distances": "distances", "features": "features"}
#: Library versions recorded in every manifest (distribution names).
LIBRARIES = (
    "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "duckdb", "dbt-core",
    "dbt-duckdb", "sqlglot",
)  # fmt: skip


def snapshot_sha256(customer_ids: np.ndarray, X: np.ndarray, feature_names: tuple[str, ...]) -> str:
    """sha256 of the training feature table's content, independent of row order.

    Canonical form: the feature names (JSON-like, comma separated), then the customer ids
    sorted and newline separated, then the feature matrix in that row order as
    little-endian float64 with every NaN as the one canonical quiet NaN.
    """
    order = np.argsort(np.asarray(customer_ids, dtype=str), kind="stable")
    digest = hashlib.sha256(",".join(feature_names).encode())
    digest.update("\n".join(np.asarray(customer_ids, dtype=str)[order]).encode())
    canonical = np.where(np.isnan(X), np.nan, X)[order].astype("<f8")
    digest.update(np.ascontiguousarray(canonical).tobytes())
    return digest.hexdigest()


def quantile_histogram(values: np.ndarray, bins: int) -> dict:
    """Quantile bin edges of the finite ``values`` and each bin's share (``np.histogram``
    bins: left-closed, the last one closed), plus the share of non-finite values."""
    valid = values[np.isfinite(values)]
    edges = np.unique(np.quantile(valid, np.linspace(0, 1, bins + 1))) if len(valid) else []
    counts = np.histogram(valid, bins=edges)[0] if len(edges) > 1 else np.array([len(valid)])
    return {
        "bin_edges": [float(e) for e in edges],
        "shares": [float(c) / max(len(valid), 1) for c in counts],
        "null_share": float(1.0 - len(valid) / max(len(values), 1)),
    }


def drift_reference(
    X: np.ndarray,
    names: tuple[str, ...],
    segment_ids: np.ndarray,
    bins: int,
    nearest_distance: np.ndarray | None = None,
    atypical_distance: float | None = None,
) -> dict:
    """What drift checks compare against (``training.monitoring``): per-feature quantile
    histograms, segment shares, and, given the served graph's distance to the nearest
    segment on the training rows, its histogram and the share flagged atypical."""
    reference: dict = {
        "features": {name: quantile_histogram(X[:, j], bins) for j, name in enumerate(names)}
    }
    ids, counts = np.unique(segment_ids, return_counts=True)
    reference["segment_shares"] = {
        str(int(i)): float(c) / len(segment_ids) for i, c in zip(ids, counts, strict=True)
    }
    if nearest_distance is not None:
        reference["nearest_distance"] = quantile_histogram(nearest_distance, bins)
        if atypical_distance is not None:
            atypical = float(np.mean(nearest_distance > atypical_distance))
            reference["atypical_share"] = atypical
    return reference


def library_versions() -> dict[str, str]:
    out = {}
    for dist in LIBRARIES:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = ""
    return out


def _segments(export: ExportResult, evaluation: Evaluation, trust: Trust, rows: int) -> list[dict]:
    names = export.feature_names
    sizes = evaluation.sizes
    out = []
    for j, explained in enumerate(trust.explanations):
        named = trust.naming.names[j]
        # A segment absent from the stability sample has no bootstrap Jaccard.
        stab = next((s for s in trust.stability.segments if s.cluster == j), None)
        out.append(
            {
                "id": int(export.stable_ids[j]),
                "name": named.name,
                "description": explained.description,
                "size": int(sizes[j]),
                "share": float(sizes[j]) / rows,
                "profile": {
                    n: _num(v) for n, v in zip(names, trust.profiles.means[j], strict=True)
                },
                "top_features": list(explained.top_features),
                "archetype": named.archetype,
                "stability": None
                if stab is None
                else {"jaccard_mean": round(stab.jaccard_mean, 6), "band": stab.band},
            }
        )
    return out


def build_manifest(
    *,
    version: str,
    created_at: datetime,
    export: ExportResult,
    evaluation: Evaluation,
    X: np.ndarray,
    customer_ids: np.ndarray,
    feature_sql_sha256: str,
    params: TrainingParams,
    choice: Choice,
    trust: Trust,
) -> dict:
    """The manifest dict (``files`` is filled by ``training.publish.publish_version``).

    Parameters
    ----------
    version, created_at : the version id and its (timezone-aware) creation time.
    export : the gated export (graph, stable ids, golden rows, parity evidence).
    evaluation : the served pipeline's evaluation on the training rows.
    X, customer_ids : the training feature matrix (DuckDB's) and its customer ids.
    feature_sql_sha256 : sha256 of the compiled feature SELECT.
    params : the training knobs, recorded under ``training``.
    choice : the chosen clustering and how it is served.
    trust : stability, ids, names and explanations, in cluster index order.
    """
    names = export.feature_names
    k = len(export.stable_ids)
    segment_ids = export.stable_ids[evaluation.labels]
    descriptions = feature_descriptions()
    stability = trust.stability
    return {
        "format_version": FORMAT_VERSION,
        "version": version,
        "created_at": created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "data_snapshot_sha256": snapshot_sha256(customer_ids, X, names),
        "feature_sql_sha256": feature_sql_sha256,
        "inputs": [f.to_dict() for f in FIELDS],
        "features": [{"name": n, "description": descriptions.get(n, "")} for n in names],
        "outputs": dict(OUTPUTS),
        "scoring_graph": export.scoring_proof.to_dict(),
        "segments": _segments(export, evaluation, trust, len(X)),
        "atypical_distance": evaluation.atypical_distance,
        "atypical_quantile": params.atypical_quantile,
        "metrics": {
            "silhouette": _num(evaluation.silhouette),
            "silhouette_sample_rows": min(params.silhouette_sample, len(X)),
            "inertia": evaluation.inertia,
            "pca_components": evaluation.n_components,
            "pca_explained_variance": evaluation.explained_variance,
            "min_segment_share": float(evaluation.sizes.min()) / len(X),
            "stability_ari_mean": stability.ari_mean,
            "stability_ari_min": stability.ari_min,
            "stability_jaccard_min": stability.jaccard_min,
            "surrogate_agreement": choice.surrogate_agreement,
            "id_match_mean_distance": _num(trust.ids.mean_distance),
            "id_row_keep_share": _num(trust.ids.row_keep_share),
            "label_agreement": export.agreement.share,
            "label_disagreements": export.agreement.disagreements,
            "feature_max_relative_error": export.feature_parity.max_relative_error,
            "folded_max_distance_error": export.fold_proof.max_distance_error,
        },
        "training": {
            "rows": len(X),
            "k": k,
            "algorithm": choice.spec.algorithm,
            "model": choice.to_dict(),
            "cluster_features": list(_clustered(params, names)),
            "seed": params.seed,
            "n_init": params.n_init,
            "pca_variance": params.pca_variance,
            "clip_quantiles": list(params.clip_quantiles),
            "opset": params.target_opset,
        },
        "selection": None if choice.selection is None else choice.selection.to_dict(),
        "stability": stability.to_dict(),
        "segment_ids": trust.ids_to_dict(),
        "naming": trust.naming.to_dict(),
        "drift_reference": drift_reference(
            X,
            names,
            segment_ids,
            params.drift_bins,
            nearest_distance=export.outputs["distances"].min(axis=1),
            atypical_distance=evaluation.atypical_distance,
        ),
        "golden_rows": export.golden_rows,
        "files": {},
        "libraries": library_versions(),
    }


def _clustered(params: TrainingParams, names: tuple[str, ...]) -> tuple[str, ...]:
    return names if params.cluster_features is None else params.cluster_features


def _num(value: float) -> float | None:
    """JSON has no NaN: a missing statistic is null."""
    return None if value is None or not np.isfinite(value) else float(value)
