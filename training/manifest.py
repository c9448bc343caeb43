"""The manifest of a model version (``docs/bundle-format.md``, format_version 1).

Everything here is read from the gated export and the evaluation; this module computes
only summaries (profiles, drift reference histograms, hashes) and never refits anything.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from segmentation import FIELDS

from .export import ExportResult
from .pipeline import Evaluation, TrainingParams

FORMAT_VERSION = 1
OUTPUTS = {"segment_id": "segment_id", "distances": "distances", "features": "features"}
#: Library versions recorded in every manifest (distribution names).
LIBRARIES = (
    "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "duckdb", "dbt-core",
    "dbt-duckdb", "sqlglot",
)  # fmt: skip
FEATURES_YAML = (
    Path(__file__).resolve().parents[1] / "dbt_project/models/marts/customer_features.yml"
)


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


def feature_descriptions(path: Path = FEATURES_YAML) -> dict[str, str]:
    """Column descriptions of ``customer_features`` from its dbt YAML ({} if absent)."""
    if not path.exists():
        return {}
    import yaml  # dbt-core's dependency; only needed when the YAML exists

    doc = yaml.safe_load(path.read_text()) or {}
    for model in doc.get("models", []):
        if model.get("name") == "customer_features":
            columns = model.get("columns", [])
            return {c["name"]: " ".join(str(c.get("description", "")).split()) for c in columns}
    return {}


def profiles(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-segment mean of each feature (NULLs ignored), [K, F] in the features' units."""
    out = np.full((k, X.shape[1]), np.nan)
    for j in range(k):
        rows = X[labels == j]
        if len(rows):
            valid = ~np.isnan(rows)
            out[j] = np.where(valid, rows, 0).sum(0) / np.maximum(valid.sum(0), 1)
    return out


def profile_z(X: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """Segment means in overall standard deviations from the overall mean, [K, F]."""
    mean, std = np.nanmean(X, axis=0), np.nanstd(X, axis=0)
    return np.nan_to_num((profile - mean) / np.where(std > 0, std, 1.0))


def segment_names(z: np.ndarray, names: tuple[str, ...], ids: np.ndarray) -> list[tuple[str, str]]:
    """(name, description) per segment: ``training.naming``'s business names, and the
    features furthest above and below average as the description."""
    from .naming import name_segments

    named = name_segments(z, names, ids=[int(i) for i in ids])
    label = [n.replace("_", " ") for n in names]
    out = []
    for j, segment in enumerate(named.names):
        ranked = np.argsort(-np.abs(z[j]), kind="stable")[:6]
        above = [label[f] for f in ranked if z[j, f] > 0.25][:3]
        below = [label[f] for f in ranked if z[j, f] < -0.25][:3]
        parts = [f"above average: {', '.join(above)}" if above else "",
                 f"below average: {', '.join(below)}" if below else ""]  # fmt: skip
        description = "; ".join(p for p in parts if p) or "close to average"
        out.append((segment.name, description[0].upper() + description[1:]))
    return out


def drift_reference(
    X: np.ndarray, names: tuple[str, ...], segment_ids: np.ndarray, bins: int
) -> dict:
    """Per-feature quantile histograms (edges, shares, null share) and segment shares."""
    features = {}
    for j, name in enumerate(names):
        col = X[:, j]
        valid = col[np.isfinite(col)]
        edges = np.unique(np.quantile(valid, np.linspace(0, 1, bins + 1))) if len(valid) else []
        counts = np.histogram(valid, bins=edges)[0] if len(edges) > 1 else np.array([len(valid)])
        features[name] = {
            "bin_edges": [float(e) for e in edges],
            "shares": [float(c) / max(len(valid), 1) for c in counts],
            "null_share": float(1.0 - len(valid) / max(len(col), 1)),
        }
    ids, counts = np.unique(segment_ids, return_counts=True)
    shares = {str(int(i)): float(c) / len(segment_ids) for i, c in zip(ids, counts, strict=True)}
    return {"features": features, "segment_shares": shares}


def library_versions() -> dict[str, str]:
    out = {}
    for dist in LIBRARIES:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = ""
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
    names_override: list[tuple[str, str]] | None = None,
) -> dict:
    """The manifest dict (``files`` is filled by ``training.publish.publish_version``).

    Parameters
    ----------
    version, created_at : the version id and its (timezone-aware) creation time.
    export : the gated export (graph, stable ids, golden rows, parity evidence).
    evaluation : the pipeline's evaluation on the training rows.
    X, customer_ids : the training feature matrix (DuckDB's) and its customer ids.
    feature_sql_sha256 : sha256 of the compiled feature SELECT.
    params : the training knobs, recorded under ``training``.
    names_override : (name, description) per KMeans cluster; default `segment_names`.
    """
    names = export.feature_names
    k = len(export.stable_ids)
    profile = profiles(X, evaluation.labels, k)
    z = profile_z(X, profile)
    named = names_override or segment_names(z, names, export.stable_ids)
    sizes = evaluation.sizes
    descriptions = feature_descriptions()
    segment_ids = export.stable_ids[evaluation.labels]
    return {
        "format_version": FORMAT_VERSION,
        "version": version,
        "created_at": created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "data_snapshot_sha256": snapshot_sha256(customer_ids, X, names),
        "feature_sql_sha256": feature_sql_sha256,
        "inputs": [_input(f) for f in FIELDS],
        "features": [{"name": n, "description": descriptions.get(n, "")} for n in names],
        "outputs": dict(OUTPUTS),
        "segments": [
            {
                "id": int(export.stable_ids[j]),
                "name": named[j][0],
                "description": named[j][1],
                "size": int(sizes[j]),
                "share": float(sizes[j]) / len(X),
                "profile": {n: _num(v) for n, v in zip(names, profile[j], strict=True)},
            }
            for j in range(k)
        ],
        "atypical_distance": evaluation.atypical_distance,
        "atypical_quantile": params.atypical_quantile,
        "metrics": {
            "silhouette": _num(evaluation.silhouette),
            "silhouette_sample_rows": min(params.silhouette_sample, len(X)),
            "inertia": evaluation.inertia,
            "pca_components": evaluation.n_components,
            "pca_explained_variance": evaluation.explained_variance,
            "label_agreement": export.agreement.share,
            "label_disagreements": export.agreement.disagreements,
            "feature_max_relative_error": export.feature_parity.max_relative_error,
            "folded_max_distance_error": export.fold_proof.max_distance_error,
        },
        "training": {
            "rows": len(X),
            "k": k,
            "algorithm": "kmeans",
            "seed": params.seed,
            "n_init": params.n_init,
            "pca_variance": params.pca_variance,
            "clip_quantiles": list(params.clip_quantiles),
            "opset": params.target_opset,
        },
        "drift_reference": drift_reference(X, names, segment_ids, params.drift_bins),
        "golden_rows": export.golden_rows,
        "files": {},
        "libraries": library_versions(),
    }


def _input(field) -> dict:
    spec = {
        "name": field.name,
        "kind": field.kind,
        "nullable": field.nullable,
        "minimum": field.minimum,
        "maximum": field.maximum,
        "description": field.description,
    }
    if field.expected_maximum is not None:
        spec["expected_maximum"] = field.expected_maximum
    return spec


def _num(value: float) -> float | None:
    """JSON has no NaN: a missing statistic is null."""
    return None if value is None or not np.isfinite(value) else float(value)
