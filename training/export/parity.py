"""Parity evidence and gates: the graph against DuckDB (features) and scikit-learn (ids).

Every check returns a plain dataclass recorded in the manifest, and raises
:class:`~segmentation.GateFailed` when the contract is not met.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from sklearn.pipeline import Pipeline

from segmentation import GateFailed
from training.export.converters import reference_graph
from training.export.fold import PIPELINE_INPUT, n_segments


@dataclass(frozen=True)
class LabelAgreement:
    """How often two label vectors agree, overall and where the margin is clear."""

    share: float
    rows: int
    disagreements: int
    clear_disagreements: int  # disagreements on rows whose margin exceeds epsilon


def label_agreement(
    labels: np.ndarray, expected: np.ndarray, distances: np.ndarray, epsilon: float
) -> LabelAgreement:
    """Compare ``labels`` with ``expected``; ``distances`` [N, K] give each row's margin."""
    ordered = np.sort(distances, axis=1)
    margin = ordered[:, 1] - ordered[:, 0] if distances.shape[1] > 1 else np.full(len(labels), 1)
    wrong = labels != expected
    return LabelAgreement(
        share=float(1.0 - wrong.mean()) if len(labels) else 1.0,
        rows=len(labels),
        disagreements=int(wrong.sum()),
        clear_disagreements=int((wrong & (margin > epsilon)).sum()),
    )


def check_agreement(what: str, agreement: LabelAgreement, min_share: float) -> None:
    """Raise `GateFailed` unless the agreement meets the segment-id gate."""
    if agreement.clear_disagreements or agreement.share < min_share:
        raise GateFailed(
            f"{what}: segment ids must equal scikit-learn's on >= {min_share:.2%} of rows and "
            f"on every row with a clear margin; found {agreement.disagreements} of "
            f"{agreement.rows} rows differ, {agreement.clear_disagreements} with a clear margin"
        )


def sklearn_segments(
    pipeline: Pipeline, X: np.ndarray, stable_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's answer on ``X``: stable segment ids [N] and centroid distances [N, K]."""
    distances = pipeline[-1].transform(pipeline[:-1].transform(X))
    return np.asarray(stable_ids)[pipeline.predict(X)], distances


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``model`` once in onnxruntime; output names read from the session."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the graphs are checked, warnings are noise
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


@dataclass(frozen=True)
class FoldProof:
    """Evidence that the folded graph equals the reference graph and scikit-learn."""

    vs_sklearn: LabelAgreement
    vs_reference: LabelAgreement
    max_distance_error: float  # largest |folded - sklearn| distance, in clustering units


def prove_folded(
    folded: onnx.ModelProto,
    pipeline: Pipeline,
    X: np.ndarray,
    stable_ids: np.ndarray | None = None,
    *,
    epsilon: float = 1e-3,
    min_share: float = 0.999,
    opset: int = 17,
) -> FoldProof:
    """Show the folded graph equals skl2onnx and scikit-learn on ``X``; `GateFailed` if not."""
    k = n_segments(pipeline)
    ids = np.arange(k, dtype=np.int64) if stable_ids is None else np.asarray(stable_ids, np.int64)
    X = np.ascontiguousarray(X, dtype=np.float64)
    sk_ids, sk_dist = sklearn_segments(pipeline, X, ids)
    out = run(folded, {PIPELINE_INPUT: X})
    reference = reference_graph(pipeline, X.shape[1], opset)
    ref = run(reference, {PIPELINE_INPUT: X.astype(np.float32)})
    proof = FoldProof(
        vs_sklearn=label_agreement(out["segment_id"], sk_ids, sk_dist, epsilon),
        vs_reference=label_agreement(out["segment_id"], ids[ref["label"]], sk_dist, epsilon),
        max_distance_error=float(np.abs(out["distances"] - sk_dist).max(initial=0.0)),
    )
    check_agreement("folded graph vs scikit-learn", proof.vs_sklearn, min_share)
    check_agreement("folded graph vs skl2onnx", proof.vs_reference, min_share)
    # float32 rounding of d2 ~ 1e-7 * ||z||^2 becomes at most ~sqrt of it after Sqrt.
    tolerance = 1e-3 * (1.0 + float(sk_dist.max(initial=0.0)))
    if not proof.max_distance_error <= tolerance:
        raise GateFailed(
            f"folded graph: distances must equal scikit-learn's within {tolerance:.3g}; "
            f"found a difference of {proof.max_distance_error:.3g}"
        )
    return proof


#: Below this, two features count as equal whatever their ratio (float noise around 0).
FEATURE_ATOL = 1e-12


@dataclass(frozen=True)
class FeatureParity:
    """Per-feature count of rows where the graph and DuckDB disagree (all zero to pass)."""

    rows: int
    mismatches: dict[str, int]
    max_relative_error: float


def check_feature_parity(
    got: np.ndarray, expected: np.ndarray, feature_names: tuple[str, ...], rtol: float
) -> FeatureParity:
    """Gate: ONNX features equal DuckDB's on every row (``rtol``), NaN exactly where NULL is."""
    if got.shape != expected.shape:
        raise GateFailed(
            f"feature parity: graph returns {got.shape[1]} features, "
            f"customer_features has {expected.shape[1]}"
        )
    both_nan = np.isnan(got) & np.isnan(expected)
    close = np.isclose(got, expected, rtol=rtol, atol=FEATURE_ATOL) | both_nan
    mismatches = {n: int((~close[:, j]).sum()) for j, n in enumerate(feature_names)}
    with np.errstate(all="ignore"):
        rel = np.abs(got - expected) / np.maximum(np.abs(expected), FEATURE_ATOL)
    finite = np.isfinite(rel)
    parity = FeatureParity(
        rows=len(got),
        mismatches=mismatches,
        max_relative_error=float(rel[finite].max(initial=0.0)),
    )
    failing = {n: c for n, c in mismatches.items() if c}
    if failing:
        detail = ", ".join(f"'{n}' on {c} of {len(got)} rows" for n, c in failing.items())
        raise GateFailed(
            f"feature parity: ONNX features must equal DuckDB's customer_features "
            f"(relative {rtol:g}, NULL as NaN); differ: {detail}"
        )
    return parity
