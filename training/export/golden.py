"""Golden rows: synthetic customers whose outputs every loader of the bundle must reproduce."""

from __future__ import annotations

import numpy as np
import onnx
from sklearn.pipeline import Pipeline

from segmentation import FIELD_NAMES, GateFailed
from segmentation.schema import BY_NAME
from training.export.isolated import run_isolated
from training.export.join import rows_to_feeds
from training.export.parity import check_agreement, label_agreement, run, sklearn_segments
from training.model.params import TrainingParams

#: Columns a customer with no purchases has at zero.
_PURCHASE_COLUMNS = tuple(
    n for n in FIELD_NAMES if n.startswith(("purchases", "oneoff", "install"))
)


def golden_inputs(raw: dict[str, np.ndarray], segment_ids: np.ndarray) -> list[dict]:
    """Real-looking synthetic customers: each segment's median customer, then edge cases.

    Built from column medians, so no training customer's row is copied into the manifest.
    Edge cases: zero purchases, missing minimum payments, balance over the credit limit,
    missing credit limit.
    """

    def typical(mask: np.ndarray) -> dict:
        return {n: float(np.nanmedian(raw[n][mask])) for n in FIELD_NAMES}

    everyone = np.ones(len(segment_ids), dtype=bool)
    rows = [(f"typical of segment {s}", typical(segment_ids == s)) for s in np.unique(segment_ids)]
    base = typical(everyone)
    rows += [
        ("zero purchases", {**base, **dict.fromkeys(_PURCHASE_COLUMNS, 0.0)}),
        ("missing minimum payments", {**base, "minimum_payments": None}),
        ("balance over limit", {**base, "balance": 1.5 * base["credit_limit"]}),
        ("missing credit limit", {**base, "credit_limit": None}),
    ]
    return [{"name": name, "inputs": _tidy(values)} for name, values in rows]


def _tidy(values: dict) -> dict:
    """Round like real data (cents, whole counts, 6-digit frequencies) within schema bounds."""
    out = {}
    for name, value in values.items():
        field = BY_NAME[name]
        if value is None:
            out[name] = None
            continue
        value = min(max(value, field.minimum), field.maximum)
        digits = 0 if field.kind == "integer" else 2 if field.maximum > 2 else 6
        out[name] = float(round(value, digits))
    return out


def record_golden_rows(
    model: onnx.ModelProto,
    pipeline: Pipeline,
    rows: list[dict],
    stable_ids: np.ndarray,
    params: TrainingParams,
) -> list[dict]:
    """Gate: the golden rows' outputs, equal in-process, in an isolated process and in sklearn.

    Returns the rows with their expected ``segment_id``, ``distances`` and ``features``.
    """
    local = run(model, rows_to_feeds([r["inputs"] for r in rows]))
    isolated = run_isolated(model.SerializeToString(), [r["inputs"] for r in rows])
    if not np.array_equal(local["segment_id"], isolated["segment_id"]) or not all(
        np.allclose(local[n], isolated[n], rtol=1e-6, atol=0, equal_nan=True)
        for n in ("distances", "features")
    ):
        raise GateFailed("golden rows: the isolated process must reproduce the graph's outputs")
    sk_ids, sk_distances = sklearn_segments(pipeline, local["features"], stable_ids)
    agreement = label_agreement(local["segment_id"], sk_ids, sk_distances, params.margin_epsilon)
    check_agreement("golden rows vs scikit-learn", agreement, 1.0)
    return [
        {
            **row,
            "segment_id": int(local["segment_id"][i]),
            "distances": [float(d) for d in local["distances"][i]],
            "features": [None if np.isnan(f) else float(f) for f in local["features"][i]],
        }
        for i, row in enumerate(rows)
    ]
