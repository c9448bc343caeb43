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

Which rows each figure describes (``rows_used`` in the manifest says the same): the fit
(preprocessing, clustering, selection, stability, the segment ids' match, silhouette,
golden rows) uses the seeded training sample (``training.sample_rows`` customers); the
gates and every statistic about the customers use every row, streamed in chunks:
segment sizes, shares, profiles, names and explanations, inertia, the atypical distance,
the drift reference's counts (its feature bin edges are the sample's quantiles, its
outer edges every row's minimum and maximum) and the data snapshot hash.
"""

from __future__ import annotations

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
from training.release.reference import drift_reference as drift_reference
from training.release.reference import snapshot_sha256 as snapshot_sha256
from training.segments.population import Population
from training.segments.trust import Trust

OUTPUTS = {"segment_id": "segment_id", "distances": "distances", "features": "features"}
#: What ``rows_used`` says: the rows each part of the manifest describes.
ROWS_USED = {
    "sample": [
        "preprocessing, clustering and selection fits", "stability", "segment id match",
        "silhouette", "golden rows", "drift_reference feature bin edges (quantiles)",
    ],
    "all": [
        "export gates (feature parity, label agreement, fold proof, scoring graph)",
        "segments (size, share, profile, names, explanations)", "metrics.inertia",
        "atypical_distance", "drift_reference counts, segment_shares, nearest_distance",
        "segment_ids.row_keep_share and migration", "data_snapshot_sha256",
    ],
}  # fmt: skip
#: Library versions recorded in every manifest (distribution names).
LIBRARIES = (
    "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "duckdb", "dbt-core",
    "dbt-duckdb", "sqlglot",
)  # fmt: skip


def library_versions() -> dict[str, str]:
    out = {}
    for dist in LIBRARIES:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = ""
    return out


def _segments(export: ExportResult, population: Population, trust: Trust) -> list[dict]:
    names = export.feature_names
    sizes, rows = population.sizes, population.rows
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
    population: Population,
    drift: dict,
    data_snapshot_sha256: str,
    sample_rows: int,
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
    evaluation : the served pipeline's evaluation (silhouette and PCA on the sample,
        inertia and atypical distance over every row).
    population : every training row's segment sizes and profiles.
    drift : the drift reference (`DriftCounts.reference`).
    data_snapshot_sha256 : `snapshot_digest` of every training row.
    sample_rows : rows of the training sample the fit saw.
    feature_sql_sha256 : sha256 of the compiled feature SELECT.
    params : the training knobs, recorded under ``training``.
    choice : the chosen clustering and how it is served.
    trust : stability, ids, names and explanations, in cluster index order.
    """
    names = export.feature_names
    k = len(export.stable_ids)
    rows = population.rows
    descriptions = feature_descriptions()
    stability = trust.stability
    return {
        "format_version": FORMAT_VERSION,
        "version": version,
        "created_at": created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "data_snapshot_sha256": data_snapshot_sha256,
        "feature_sql_sha256": feature_sql_sha256,
        "inputs": [f.to_dict() for f in FIELDS],
        "features": [{"name": n, "description": descriptions.get(n, "")} for n in names],
        "outputs": dict(OUTPUTS),
        "scoring_graph": export.scoring_proof.to_dict(),
        "segments": _segments(export, population, trust),
        "atypical_distance": evaluation.atypical_distance,
        "atypical_quantile": params.atypical_quantile,
        "metrics": {
            "silhouette": _num(evaluation.silhouette),
            "silhouette_sample_rows": min(params.silhouette_sample, sample_rows),
            "inertia": evaluation.inertia,
            "pca_components": evaluation.n_components,
            "pca_explained_variance": evaluation.explained_variance,
            "min_segment_share": float(population.sizes.min()) / rows,
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
            "rows": rows,
            "sample_rows": sample_rows,
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
        "drift_reference": drift,
        "rows_used": ROWS_USED,
        "golden_rows": export.golden_rows,
        "files": {},
        "libraries": library_versions(),
    }


def _clustered(params: TrainingParams, names: tuple[str, ...]) -> tuple[str, ...]:
    return names if params.cluster_features is None else params.cluster_features


def _num(value: float) -> float | None:
    """JSON has no NaN: a missing statistic is null."""
    return None if value is None or not np.isfinite(value) else float(value)
