"""The engineered features of ``customer_features.sql`` written in numpy, for benchmarks.

The scikit-learn baseline of ``bench_scoring.py`` and the feature-set comparison of
``real_data_selection.py`` both use it; ``bench_scoring.py`` checks it equals the compiled
SQL (relative 1e-9) before timing anything.
"""

from __future__ import annotations

import numpy as np

LOGGED = (
    "balance", "purchases", "oneoff_purchases", "installments_purchases", "cash_advance",
    "credit_limit", "payments", "minimum_payments",
)  # fmt: skip
PASSED_THROUGH = (
    "balance_frequency", "purchases_frequency", "oneoff_purchases_frequency",
    "purchases_installments_frequency", "cash_advance_frequency", "tenure",
)  # fmt: skip


def numpy_features(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``customer_features.sql`` written in numpy: the baseline's feature step."""
    tenure = np.maximum(c["tenure"], 1.0)
    parts = c["oneoff_purchases"] + c["installments_purchases"]
    spend = c["cash_advance"] + c["purchases"]
    with np.errstate(divide="ignore", invalid="ignore"):
        pay_ratio = c["payments"] / np.maximum(c["minimum_payments"], 1.0)
        out = {
            "credit_utilization_ratio": np.minimum(
                c["balance"] / np.maximum(c["credit_limit"], 1.0), 5.0
            ),
            "purchases_per_month": c["purchases_trx"] / tenure,
            "average_ticket": np.where(
                c["purchases_trx"] > 0, c["purchases"] / c["purchases_trx"], 0.0
            ),
            "oneoff_purchase_share": np.where(parts > 0, c["oneoff_purchases"] / parts, 0.0),
            "installment_purchase_share": np.where(
                parts > 0, c["installments_purchases"] / parts, 0.0
            ),
            "cash_advance_ratio": np.where(spend > 0, c["cash_advance"] / spend, 0.0),
            "cash_advance_intensity": c["cash_advance_trx"] / tenure,
            "payment_to_minimum_ratio": np.minimum(pay_ratio, 100.0),
            "full_payment_share": c["prc_full_payment"],
            "payment_consistency_index": 0.5 * np.minimum(pay_ratio, 1.0)
            + 0.5 * c["prc_full_payment"],
        }
    for name in LOGGED:
        out[f"log_{name}"] = np.log(1.0 + c[name])
    for name in PASSED_THROUGH:
        out[name] = c[name]
    return out
