"""Parity evidence and gates: the graph against DuckDB (features) and scikit-learn (ids).

Every check returns a plain dataclass recorded in the manifest, and raises
:class:`~segmentation.GateFailed` when the contract is not met. Each check has a streaming
form (``add`` one chunk of rows at a time, then ``result``) so the gates see every
training row in bounded memory; the one-call functions are that form on a single chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from sklearn.pipeline import Pipeline

from segmentation import GateFailed
from training.export._runner import GraphRunner, transpose
from training.export.converters import reference_graph
from training.export.fold import PIPELINE_INPUT, n_segments


@dataclass(frozen=True)
class LabelAgreement:
    """How often two label vectors agree, overall and where the margin is clear."""

    share: float
    rows: int
    disagreements: int
    clear_disagreements: int  # disagreements on rows whose margin exceeds epsilon


class AgreementCounter:
    """`label_agreement` over chunks of rows: ``add`` each chunk, then ``result``."""

    def __init__(self, epsilon: float) -> None:
        self.epsilon = epsilon
        self.rows = self.disagreements = self.clear_disagreements = 0

    def add(self, labels: np.ndarray, expected: np.ndarray, distances: np.ndarray) -> None:
        """Count one chunk; ``distances`` [n, K] give each row's margin."""
        wrong = np.asarray(labels) != np.asarray(expected)
        self.rows += len(wrong)
        if not wrong.any():
            return
        near = np.sort(distances[wrong], axis=1)
        margin = near[:, 1] - near[:, 0] if near.shape[1] > 1 else np.ones(len(near))
        self.disagreements += int(wrong.sum())
        self.clear_disagreements += int((margin > self.epsilon).sum())

    def result(self) -> LabelAgreement:
        share = 1.0 - self.disagreements / self.rows if self.rows else 1.0
        return LabelAgreement(share, self.rows, self.disagreements, self.clear_disagreements)


def label_agreement(
    labels: np.ndarray, expected: np.ndarray, distances: np.ndarray, epsilon: float
) -> LabelAgreement:
    """Compare ``labels`` with ``expected``; ``distances`` [N, K] give each row's margin."""
    counter = AgreementCounter(epsilon)
    counter.add(labels, expected, distances)
    return counter.result()


def check_agreement(what: str, agreement: LabelAgreement, min_share: float) -> None:
    """Raise `GateFailed` unless the agreement meets the segment-id gate."""
    if agreement.clear_disagreements or agreement.share < min_share:
        raise GateFailed(
            f"{what}: segment ids must equal scikit-learn's on >= {min_share:.2%} of rows and "
            f"on every row with a clear margin; found {agreement.disagreements} of "
            f"{agreement.rows} rows differ, {agreement.clear_disagreements} with a clear margin"
        )


def sklearn_assign(pipeline: Pipeline, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's answer on ``X``: the cluster index [N] and the centroid distances
    [N, K] of the fitted pipeline, from one pass of the preprocessing and one distance
    computation. The index is the nearest centroid (``KMeans.predict``'s rule, and how
    ``training.model.pipeline.evaluate`` labels rows); a float tie may resolve either
    way, which the margin rule of the label gate allows for."""
    distances = pipeline[-1].transform(pipeline[:-1].transform(X))
    return distances.argmin(axis=1), distances


def sklearn_segments(
    pipeline: Pipeline, X: np.ndarray, stable_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's answer on ``X``: stable segment ids [N] and centroid distances [N, K]."""
    labels, distances = sklearn_assign(pipeline, X)
    return np.asarray(stable_ids)[labels], distances


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``model`` once in onnxruntime; output names read from the session."""
    return GraphRunner(model)(feeds)


@dataclass(frozen=True)
class FoldProof:
    """Evidence that the folded graph equals the reference graph and scikit-learn."""

    vs_sklearn: LabelAgreement
    vs_reference: LabelAgreement
    max_distance_error: float  # largest |folded - sklearn| distance, in clustering units


class FoldProver:
    """`prove_folded` over chunks: ``add`` each chunk of DuckDB's features with
    scikit-learn's answer on it, then ``result`` (which raises `GateFailed`)."""

    def __init__(
        self,
        folded: onnx.ModelProto,
        pipeline: Pipeline,
        stable_ids: np.ndarray,
        n_features: int,
        *,
        epsilon: float,
        opset: int,
    ) -> None:
        self.ids = np.asarray(stable_ids, np.int64)
        self.folded = GraphRunner(folded)
        self.reference = GraphRunner(reference_graph(pipeline, n_features, opset))
        self.vs_sklearn = AgreementCounter(epsilon)
        self.vs_reference = AgreementCounter(epsilon)
        self.max_error = self.max_distance = 0.0

    def run(self, X: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The folded and the skl2onnx graphs' outputs on DuckDB's features ``X``."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        return self.folded({PIPELINE_INPUT: X}), self.reference(
            {PIPELINE_INPUT: X.astype(np.float32)}
        )

    def add(
        self,
        X: np.ndarray,
        sk_ids: np.ndarray,
        sk_dist: np.ndarray,
        outputs: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None,
    ) -> None:
        """Compare one chunk with scikit-learn's answer on it; ``outputs`` are `run`'s on
        ``X`` when already computed."""
        if len(X) == 0:
            return
        out, ref = self.run(X) if outputs is None else outputs
        self.vs_sklearn.add(out["segment_id"], sk_ids, sk_dist)
        self.vs_reference.add(out["segment_id"], self.ids[ref["label"]], sk_dist)
        error = float(np.abs(out["distances"] - sk_dist).max(initial=0.0))
        self.max_error = max(self.max_error, error)
        self.max_distance = max(self.max_distance, float(sk_dist.max(initial=0.0)))

    def result(self, min_share: float) -> FoldProof:
        proof = FoldProof(self.vs_sklearn.result(), self.vs_reference.result(), self.max_error)
        check_agreement("folded graph vs scikit-learn", proof.vs_sklearn, min_share)
        check_agreement("folded graph vs skl2onnx", proof.vs_reference, min_share)
        # float32 rounding of d2 ~ 1e-7 * ||z||^2 becomes at most ~sqrt of it after Sqrt.
        tolerance = 1e-3 * (1.0 + self.max_distance)
        if not proof.max_distance_error <= tolerance:
            raise GateFailed(
                f"folded graph: distances must equal scikit-learn's within {tolerance:.3g}; "
                f"found a difference of {proof.max_distance_error:.3g}"
            )
        return proof


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
    prover = FoldProver(folded, pipeline, ids, X.shape[1], epsilon=epsilon, opset=opset)
    prover.add(X, *sklearn_segments(pipeline, X, ids))
    return prover.result(min_share)


#: Below this, two features count as equal whatever their ratio (float noise around 0).
FEATURE_ATOL = 1e-12


@dataclass(frozen=True)
class FeatureParity:
    """Per-feature count of rows where the graph and DuckDB disagree (all zero to pass)."""

    rows: int
    mismatches: dict[str, int]
    max_relative_error: float


class FeatureParityCounter:
    """`check_feature_parity` over chunks: ``add`` each chunk, then ``result``.

    Works feature-major ([F, n], DuckDB's chunks are column-major) in buffers kept from
    chunk to chunk: fresh temporaries of a chunk's size would be page-faulted in anew
    every time, which cost more than the arithmetic.
    """

    def __init__(self, feature_names: tuple[str, ...], rtol: float) -> None:
        self.feature_names = tuple(feature_names)
        self.rtol = rtol
        self.rows = 0
        self.mismatches = np.zeros(len(self.feature_names), dtype=np.int64)
        self.max_relative_error = 0.0
        self._buffers: dict[str, np.ndarray] = {}

    def _buffer(self, name: str, shape: tuple[int, int], dtype=np.float64) -> np.ndarray:
        held = self._buffers.get(name)
        if held is None or held.shape[1] < shape[1]:
            held = self._buffers[name] = np.empty(shape, dtype=dtype)
        return held[:, : shape[1]]

    def add(self, got: np.ndarray, expected: np.ndarray) -> None:
        if got.ndim != 2 or got.shape[1:] != expected.shape[1:] or len(got) != len(expected):
            raise GateFailed(
                f"feature parity: graph returns {got.shape[-1]} features, "
                f"customer_features has {expected.shape[-1]}"
            )
        self.rows += len(got)
        if len(got) == 0:
            return
        shape = (got.shape[1], len(got))
        e = expected.T if expected.T.flags.c_contiguous else np.ascontiguousarray(expected.T)
        g = self._buffer("got", shape)
        transpose(got, g)
        diff, scale, limit = (self._buffer(n, shape) for n in ("diff", "scale", "limit"))
        close = self._buffer("close", shape, bool)
        with np.errstate(all="ignore"):
            # np.isclose's rule, |a - b| <= atol + rtol * |b|, in place.
            np.subtract(g, e, out=diff)
            np.abs(diff, out=diff)
            np.abs(e, out=scale)
            np.multiply(scale, self.rtol, out=limit)
            limit += FEATURE_ATOL
            np.less_equal(diff, limit, out=close)
            np.maximum(scale, FEATURE_ATOL, out=scale)
            np.divide(diff, scale, out=diff)
            # The largest finite relative error: first where close.
            largest = float(np.max(diff, where=close, initial=0.0))
            far_counts = shape[1] - np.count_nonzero(close, axis=1)
            for j in np.flatnonzero(far_counts):  # NaN or beyond the tolerance: few values
                far = np.flatnonzero(~close[j])
                gf, ef = g[j, far], e[j, far]
                # NaN where DuckDB has NULL is equal; so is the same infinity (np.isclose).
                equal = (np.isnan(gf) & np.isnan(ef)) | (np.isinf(ef) & (gf == ef))
                self.mismatches[j] += int((~equal).sum())
                rest = diff[j, far]
                largest = max(largest, float(rest[np.isfinite(rest)].max(initial=0.0)))
        self.max_relative_error = max(self.max_relative_error, largest)

    def result(self) -> FeatureParity:
        mismatches = {n: int(c) for n, c in zip(self.feature_names, self.mismatches, strict=True)}
        parity = FeatureParity(self.rows, mismatches, self.max_relative_error)
        failing = {n: c for n, c in mismatches.items() if c}
        if failing:
            detail = ", ".join(f"'{n}' on {c} of {self.rows} rows" for n, c in failing.items())
            raise GateFailed(
                f"feature parity: ONNX features must equal DuckDB's customer_features "
                f"(relative {self.rtol:g}, NULL as NaN); differ: {detail}"
            )
        return parity


def check_feature_parity(
    got: np.ndarray, expected: np.ndarray, feature_names: tuple[str, ...], rtol: float
) -> FeatureParity:
    """Gate: ONNX features equal DuckDB's on every row (``rtol``), NaN exactly where NULL is."""
    counter = FeatureParityCounter(feature_names, rtol)
    counter.add(got, expected)
    return counter.result()
