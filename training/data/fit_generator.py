"""Fit the sample-data generator's parameters from the real CC GENERAL file.

Run once, commit the output (``training/datagen/params.json``): it holds only figures
(shares, means, covariances), never rows. Usage::

    .venv/bin/python -m training.data.fit_generator [../shared/data/cc_general.csv] [out.json]

The model (see ``training/datagen/_sampler.py`` for how it is sampled):

- every customer falls in one *activity pattern*: which of one-off purchases, installment
  purchases and cash advance are non-zero (the zero-inflation of the monetary columns and
  the correlation of their zeros, exactly as in the real file);
- within a pattern, a Gaussian mixture (components chosen by BIC) over the transformed
  columns that are active in it: ``log1p`` of money, ``log`` of the credit limit, minimum
  payment and transaction counts, and the frequencies as they are (snapped back to their
  k/tenure grid when sampling); each component also carries its own TENURE distribution;
- per pattern, the joint probability of the rare states (zero balance, zero payments,
  missing minimum payment), and global shares of the published quirks.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from segmentation.schema import ID_RAW_NAME, RAW_NAMES

#: The latent variables, in a fixed order; each pattern uses the subset active in it.
VARIABLES: tuple[str, ...] = (
    "logit_utilization",
    "log_credit_limit",
    "log1p_payments",
    "log_minimum_payments",
    "balance_frequency",
    "prc_full_payment",
    "log1p_oneoff_purchases",
    "oneoff_purchases_frequency",
    "log1p_installments_purchases",
    "purchases_installments_frequency",
    "purchases_frequency",
    "log_purchases_trx",
    "log1p_cash_advance",
    "cash_advance_frequency",
    "log_cash_advance_trx",
)
_CORE = VARIABLES[:6]
_ONEOFF = VARIABLES[6:8]
_INSTALLMENTS = VARIABLES[8:10]
_PURCHASES = VARIABLES[10:12]
_CASH = VARIABLES[12:15]

TENURES: tuple[int, ...] = (6, 7, 8, 9, 10, 11, 12)
#: Rare states, a bitmask: 1 balance is zero, 2 payments are zero, 4 minimum payment missing.
N_STATES = 8
#: Patterns with fewer real rows than this are left out (the real file has one row with
#: no purchases and no cash advance at all).
MIN_PATTERN_ROWS = 50
MAX_COMPONENTS = 5
#: How far the exact-0 and exact-1 frequencies are moved out (see ``_censor``).
CENSOR_SHIFT = 0.2
SEED = 42

DEFAULT_SOURCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "cc_general.csv"
DEFAULT_OUTPUT = Path(__file__).resolve().with_name("params.json")


def load_columns(path: Path) -> dict[str, np.ndarray]:
    """Read the raw file into float64 arrays (NaN where blank), keyed by raw column name."""
    table = pacsv.read_csv(path)
    names = table.column_names
    expected = [ID_RAW_NAME, *RAW_NAMES]
    if names != expected:
        raise SystemExit(f"{path}: expected the CC GENERAL header {expected}, found {names}")
    return {
        c: np.asarray(table[c].to_numpy(zero_copy_only=False), dtype=np.float64) for c in RAW_NAMES
    }


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def _censor(f: np.ndarray) -> np.ndarray:
    """Move the point masses of a frequency at exactly 0 and 1 out of the open interval.

    A third of customers sit exactly at 0 or 1; a Gaussian fitted through those masses
    smears them over the grid. Shifted apart, the mixture keeps them as masses, and the
    sampler's snap-and-clip to the k/tenure grid puts them back at 0 and 1.
    """
    return np.where(f >= 1, f + CENSOR_SHIFT, np.where(f <= 0, -CENSOR_SHIFT, f))


def transform(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The latent variables of every row (meaningless where a column is inactive)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "logit_utilization": _logit(d["BALANCE"] / d["CREDIT_LIMIT"]),
            "log_credit_limit": np.log(d["CREDIT_LIMIT"]),
            "log1p_payments": np.log1p(d["PAYMENTS"]),
            "log_minimum_payments": np.log(d["MINIMUM_PAYMENTS"]),
            "balance_frequency": _censor(d["BALANCE_FREQUENCY"]),
            "prc_full_payment": _censor(d["PRC_FULL_PAYMENT"]),
            "log1p_oneoff_purchases": np.log1p(d["ONEOFF_PURCHASES"]),
            "oneoff_purchases_frequency": _censor(d["ONEOFF_PURCHASES_FREQUENCY"]),
            "log1p_installments_purchases": np.log1p(d["INSTALLMENTS_PURCHASES"]),
            "purchases_installments_frequency": _censor(d["PURCHASES_INSTALLMENTS_FREQUENCY"]),
            "purchases_frequency": _censor(d["PURCHASES_FREQUENCY"]),
            "log_purchases_trx": np.log(np.maximum(d["PURCHASES_TRX"], 1.0)),
            "log1p_cash_advance": np.log1p(d["CASH_ADVANCE"]),
            "cash_advance_frequency": _censor(d["CASH_ADVANCE_FREQUENCY"]),
            "log_cash_advance_trx": np.log(np.maximum(d["CASH_ADVANCE_TRX"], 1.0)),
        }


def _pattern_variables(oneoff: bool, installments: bool, cash: bool) -> tuple[str, ...]:
    names = list(_CORE)
    if oneoff:
        names += _ONEOFF
    if installments:
        names += _INSTALLMENTS
    if oneoff or installments:
        names += _PURCHASES
    if cash:
        names += _CASH
    return tuple(names)


def _fit_mixture(x: np.ndarray) -> GaussianMixture:
    """The Gaussian mixture with the lowest BIC, 1..MAX_COMPONENTS components."""
    best, best_bic = None, np.inf
    for k in range(1, MAX_COMPONENTS + 1):
        gm = GaussianMixture(k, covariance_type="full", reg_covar=1e-3, n_init=2, random_state=SEED)
        with warnings.catch_warnings():
            # A non-converged candidate is simply scored by BIC like the others.
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(x)
        bic = gm.bic(x)
        if bic < best_bic:
            best, best_bic = gm, bic
    return best


def _sig(values: np.ndarray, digits: int = 9) -> list:
    return np.vectorize(lambda v: float(f"{v:.{digits}g}"), otypes=[float])(values).tolist()


def fit(d: dict[str, np.ndarray]) -> dict:
    """Fit every parameter of the generator; returns the JSON-ready document."""
    n = len(d["BALANCE"])
    z = transform(d)
    oneoff = d["ONEOFF_PURCHASES"] > 0
    inst = d["INSTALLMENTS_PURCHASES"] > 0
    cash = d["CASH_ADVANCE"] > 0
    state = (
        (d["BALANCE"] == 0) * 1 + (d["PAYMENTS"] == 0) * 2 + np.isnan(d["MINIMUM_PAYMENTS"]) * 4
    ).astype(int)
    tenure = d["TENURE"].astype(int)
    patterns = []
    for o in (False, True):
        for i in (False, True):
            for c in (False, True):
                rows = (oneoff == o) & (inst == i) & (cash == c)
                if rows.sum() < MIN_PATTERN_ROWS:
                    continue
                names = _pattern_variables(o, i, c)
                # The Gaussian describes the ordinary customers; the rare states and the
                # over-limit balances are sampled from their own shares.
                fit_rows = rows & (state == 0) & (d["BALANCE"] <= d["CREDIT_LIMIT"])
                x = np.column_stack([z[v][fit_rows] for v in names])
                gm = _fit_mixture(x)
                resp = gm.predict_proba(x)
                ten = tenure[fit_rows]
                components = []
                for k in range(gm.n_components):
                    # Each archetype's tenure shares, weighted by membership.
                    counts = np.array([resp[ten == t, k].sum() for t in TENURES])
                    components.append(
                        {
                            "weight": float(gm.weights_[k]),
                            "mean": _sig(gm.means_[k]),
                            "covariance": _sig(gm.covariances_[k]),
                            "tenure": _sig(counts / counts.sum()),
                        }
                    )
                patterns.append(
                    {
                        "oneoff": o,
                        "installments": i,
                        "cash_advance": c,
                        "rows": int(rows.sum()),
                        "variables": list(names),
                        "states": _sig(np.bincount(state[rows], minlength=N_STATES) / rows.sum()),
                        "components": components,
                    }
                )
    kept = sum(p["rows"] for p in patterns)
    for p in patterns:
        p["share"] = p["rows"] / kept
    purchasing = oneoff | inst
    total = d["ONEOFF_PURCHASES"] + d["INSTALLMENTS_PURCHASES"]
    quirk = purchasing & (np.abs(total - d["PURCHASES"]) > 0.005)
    limit = d["CREDIT_LIMIT"][~np.isnan(d["CREDIT_LIMIT"])]
    over = d["BALANCE"] > d["CREDIT_LIMIT"]
    log_excess = np.log(d["BALANCE"][over] / d["CREDIT_LIMIT"][over] - 1)
    return {
        "format_version": 1,
        "source": {"rows": int(n), "columns": [ID_RAW_NAME, *RAW_NAMES]},
        "fitted_with": {"numpy": np.__version__, "scikit-learn": sklearn.__version__},
        "variables": list(VARIABLES),
        "tenures": list(TENURES),
        "patterns": patterns,
        "quirks": {
            "purchases_not_sum_share": float(quirk.sum() / purchasing.sum()),
            "cash_advance_frequency_over_1_share": float(
                (d["CASH_ADVANCE_FREQUENCY"][cash] > 1).mean()
            ),
            "balance_above_limit_share": float(over.sum() / (d["BALANCE"] > 0).sum()),
            "balance_above_limit_log_excess_mean": float(log_excess.mean()),
            "balance_above_limit_log_excess_std": float(log_excess.std()),
            "credit_limit_missing_share": float(np.isnan(d["CREDIT_LIMIT"]).mean()),
            "credit_limit_multiple_of_500_share": float(
                np.isclose(limit / 500, np.round(limit / 500)).mean()
            ),
        },
        # The real figures the tests and the README compare against (aggregates only).
        "reference": {
            "balance_above_limit_share": float((d["BALANCE"] > d["CREDIT_LIMIT"]).mean()),
            "minimum_payments_missing_share": float(np.isnan(d["MINIMUM_PAYMENTS"]).mean()),
            "tenure_12_share": float((tenure == 12).mean()),
        },
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    source = Path(argv[0]) if argv else DEFAULT_SOURCE
    output = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTPUT
    doc = fit(load_columns(source))
    doc["source"]["sha256"] = hashlib.sha256(source.read_bytes()).hexdigest()
    text = json.dumps(doc, indent=1) + "\n"
    output.write_text(text)
    sizes = ", ".join(f"{len(p['components'])}" for p in doc["patterns"])
    print(f"wrote {output}: {len(doc['patterns'])} patterns, components {sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
