"""Gates a retrained candidate must pass against the current model before promotion.

Segment shares are the candidate's over every training row (``Candidate.population``).
Both models' silhouettes are measured on the same new rows (a seeded sample of the
candidate's training sample, ``Candidate.data``), each in its own clustering space: the
candidate's PCA embedding, and the current model's, read from its graph (the folded
pipeline's ``z``, the affine map before the centroid distances; translation does not
change a silhouette). Every measure is recorded, passed or not, in the run's ledger
record and in the rejection marker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
from sklearn.metrics import silhouette_score

from segmentation.bundle import Bundle
from segmentation.config import RetrainPolicy
from training.candidate import Candidate
from training.model.sampling import sample_rows

#: The folded graph's clustering-space value (``training.export.fold``), [P, N].
EMBEDDING_VALUE = "segmentation_pipeline/z"
#: Rows the silhouettes are computed on (quadratic in rows), seeded.
SILHOUETTE_ROWS = 5_000


@dataclass(frozen=True)
class GateReport:
    """The gates' verdict and every measure behind it."""

    passed: bool
    reasons: tuple[str, ...]
    measures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reasons": list(self.reasons), "measures": self.measures}


def current_embedding(bundle: Bundle, feeds: dict[str, np.ndarray]) -> np.ndarray | None:
    """The current model's clustering-space coordinates of ``feeds`` [N, P], read from its
    own graph; None for a graph without the folded pipeline's embedding."""
    model = onnx.load_from_string(bundle.scorer.model_bytes)
    if not any(EMBEDDING_VALUE in node.output for node in model.graph.node):
        return None
    model.graph.output.append(onnx.ValueInfoProto(name=EMBEDDING_VALUE))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    # A scoring graph reads only the columns its clustering uses.
    (z,) = session.run([EMBEDDING_VALUE], {i.name: feeds[i.name] for i in session.get_inputs()})
    return np.ascontiguousarray(np.asarray(z, dtype=np.float64).T)


def _silhouette(embedding: np.ndarray, labels: np.ndarray) -> float | None:
    if len(np.unique(labels)) < 2:
        return None
    return float(silhouette_score(embedding, labels))


def gate_candidate(
    candidate: Candidate, current: Bundle | None, policy: RetrainPolicy, seed: int
) -> GateReport:
    """Judge ``candidate`` against ``current`` (None: the first model) under ``policy``."""
    evaluation, trust = candidate.fitted.evaluation, candidate.fitted.trust
    reasons: list[str] = []
    sizes = candidate.population.sizes
    shares = sizes / sizes.sum()
    measures: dict = {"min_segment_share": round(float(shares.min()), 6)}
    if shares.min() < policy.min_segment_share:
        reasons.append(
            f"smallest segment {shares.min():.1%} < minimum {policy.min_segment_share:.0%}"
        )
    ari = trust.stability.ari_mean
    measures["stability_ari_mean"] = round(ari, 6)
    if ari < policy.min_stability_ari:
        reasons.append(f"bootstrap ARI {ari:.3f} < floor {policy.min_stability_ari}")
    # evaluation's labels and embedding are the training sample's rows, as data.raw.
    rows = sample_rows(len(evaluation.labels), SILHOUETTE_ROWS, seed)
    new = _silhouette(evaluation.embedding[rows], evaluation.labels[rows])
    measures["silhouette_candidate"] = None if new is None else round(new, 6)
    measures["label_agreement"] = candidate.export.agreement.share
    measures["feature_max_relative_error"] = candidate.export.feature_parity.max_relative_error
    measures["id_row_keep_share"] = trust.ids.row_keep_share
    if current is not None:
        feeds = {n: np.ascontiguousarray(v[rows]) for n, v in candidate.data.raw.items()}
        old_ids = current.scorer.score(feeds).segment_id
        embedding = current_embedding(current, feeds)
        old = None if embedding is None else _silhouette(embedding, old_ids)
        measures["silhouette_current"] = None if old is None else round(old, 6)
        measures["current_version"] = current.version
        if new is None:
            reasons.append("candidate has a single segment on the new rows")
        elif old is not None and new < old - policy.silhouette_tolerance:
            reasons.append(
                f"silhouette {new:.3f} worse than current {old:.3f} by more than "
                f"{policy.silhouette_tolerance}"
            )
    return GateReport(not reasons, tuple(reasons), measures)
