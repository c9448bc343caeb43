"""Sample one block of customers from the fitted model, vectorised with numpy.

Rows are produced in fixed blocks of ``BLOCK_ROWS``. Block ``b`` draws from its own two
random streams (``SeedSequence(seed, spawn_key=(b, stream))``): one matrix of uniforms and
one of standard normals, a fixed number of each per row. So every row depends only on the
seed and its own position: the output does not depend on how a file is chunked, and the
first ``k`` rows of ``n`` are the same for every ``n >= k``.

Values come out in exact form: money as integer cents, frequencies as grid codes
(``denominator * CODE_BASE + months``), counts as integers. ``_render`` turns them into
float64 or text columns, both from the same integers, so CSV and Parquet agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._params import Params, load_params

#: Rows per sampling block: small enough for the per-block matrices to stay in cache.
BLOCK_ROWS = 1 << 15
#: First customer number: ids are "C10001", "C10002", ... like the published file.
FIRST_ID = 10001
#: Frequency grid codes: denominator * CODE_BASE + numerator (numerator up to 1.5 * 12).
CODE_BASE = 32
#: Latent money is capped at log1p(1e6): Gaussian tails at 10M rows would otherwise reach
#: amounts no card account has; counts are capped at e**9 (about 8,100 transactions).
_MAX_LOG_MONEY = float(np.log1p(1e6))
_MAX_LOG_COUNT = 9.0
#: Uniforms drawn per row, one column per random choice (see the ``_U_`` indices).
_N_UNIFORM = 11
_U_PATTERN, _U_COMPONENT, _U_TENURE, _U_STATE, _U_LIMIT_MISSING = range(5)
_U_LIMIT_STEP, _U_QUIRK, _U_QUIRK_FACTOR, _U_CASH_OVER, _U_CASH_OVER_MONTHS = range(5, 10)
_U_OVER_LIMIT = 10
#: Over-limit balances are at most this many times the limit (the published maximum is 16).
_MAX_OVER_LIMIT_EXCESS = 16.0

MONEY = (
    "BALANCE",
    "PURCHASES",
    "ONEOFF_PURCHASES",
    "INSTALLMENTS_PURCHASES",
    "CASH_ADVANCE",
    "CREDIT_LIMIT",
    "PAYMENTS",
    "MINIMUM_PAYMENTS",
)
FREQUENCIES = (
    "BALANCE_FREQUENCY",
    "PURCHASES_FREQUENCY",
    "ONEOFF_PURCHASES_FREQUENCY",
    "PURCHASES_INSTALLMENTS_FREQUENCY",
    "CASH_ADVANCE_FREQUENCY",
    "PRC_FULL_PAYMENT",
)
COUNTS = ("CASH_ADVANCE_TRX", "PURCHASES_TRX", "TENURE")


@dataclass(frozen=True)
class Block:
    """One block of customers in exact integer form (see the module docstring)."""

    start: int  # global index of the first row
    cents: dict[str, np.ndarray]  # int64
    nulls: dict[str, np.ndarray]  # bool masks, only for the nullable money columns
    codes: dict[str, np.ndarray]  # int64 frequency grid codes
    counts: dict[str, np.ndarray]  # int64

    def __len__(self) -> int:
        return len(self.counts["TENURE"])


def _streams(seed: int, block: int) -> tuple[np.random.Generator, np.random.Generator]:
    def gen(stream: int) -> np.random.Generator:
        return np.random.Generator(
            np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(block, stream)))
        )

    return gen(0), gen(1)


def _choose(cdfs: tuple[np.ndarray, ...], group: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per row, a categorical draw from its group's CDF, in one vectorised search.

    Group ``g``'s CDF is shifted to ``(g, g + 1]`` and all are concatenated, so a search
    for ``g + u`` lands inside the row's own group.
    """
    sizes = np.array([len(c) for c in cdfs])
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    shifted = np.concatenate([g + c for g, c in enumerate(cdfs)])
    pick = np.searchsorted(shifted, group + u, side="right") - offsets[group]
    return np.minimum(pick, sizes[group] - 1)  # g + u can round up to g + 1


def _latent(p: Params, u: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
    """Pattern, tenure, rare state and latent variables of every row."""
    n = len(u)
    pattern = np.searchsorted(p.pattern_cdf, u[:, _U_PATTERN], side="right")
    state = _choose(tuple(q.state_cdf for q in p.patterns), pattern, u[:, _U_STATE])
    comp = _choose(tuple(q.component_cdf for q in p.patterns), pattern, u[:, _U_COMPONENT])
    # Sorting by archetype makes each one a contiguous slice: one gather and one scatter
    # of the whole matrix instead of a fancy-indexed scatter per archetype. int16 keys
    # make numpy's stable sort a radix sort.
    key = (pattern * 16 + comp).astype(np.int16)
    order = np.argsort(key, kind="stable")
    bounds = np.searchsorted(key[order], np.arange(len(p.patterns) * 16 + 1))
    zs = np.take(z, order, axis=0)
    us = np.take(u[:, _U_TENURE], order)
    xs = np.zeros((n, len(p.variables)))
    ts = np.empty(n, dtype=np.int64)
    for g, pat in enumerate(p.patterns):
        for k, c in enumerate(pat.components):
            a, b = bounds[g * 16 + k], bounds[g * 16 + k + 1]
            xs[a:b, pat.columns] = c.mean + zs[a:b, : len(c.mean)] @ c.chol.T
            ts[a:b] = p.tenures[np.searchsorted(c.tenure_cdf, us[a:b], side="right")]
    inverse = np.empty_like(order)
    inverse[order] = np.arange(n)
    return pattern, np.take(ts, inverse), state, np.take(xs, inverse, axis=0)


def _money(y: np.ndarray, log1p: bool = True) -> np.ndarray:
    """Cents from a latent log amount, at least one cent."""
    y = np.minimum(y, _MAX_LOG_MONEY)
    amount = np.expm1(y) if log1p else np.exp(y)
    return np.maximum(np.rint(amount * 100.0), 1).astype(np.int64)


def _months(f: np.ndarray, tenure: np.ndarray, low: int | np.ndarray) -> np.ndarray:
    return np.clip(np.rint(f * tenure), low, tenure).astype(np.int64)


def _count(y: np.ndarray, at_least: np.ndarray) -> np.ndarray:
    return np.maximum(np.rint(np.exp(np.minimum(y, _MAX_LOG_COUNT))), at_least).astype(np.int64)


def _balance(
    p: Params, limit_cents: np.ndarray, col: dict[str, np.ndarray], u: np.ndarray, z: np.ndarray
) -> np.ndarray:
    """Balance as a share of the limit; a few customers above it, as in the source."""
    share = 1.0 / (1.0 + np.exp(-np.clip(col["logit_utilization"], -30.0, 30.0)))
    within = np.clip(np.rint(limit_cents * share), 1, limit_cents)
    excess = np.minimum(
        np.exp(p.over_limit_log_excess_mean + p.over_limit_log_excess_std * z[:, -1]),
        _MAX_OVER_LIMIT_EXCESS,
    )
    above = np.maximum(np.rint(limit_cents * (1.0 + excess)), limit_cents + 1)
    over = u[:, _U_OVER_LIMIT] < p.balance_above_limit_share
    return np.where(over, above, within).astype(np.int64)


def sample_block(seed: int, block: int, n_rows: int, params: Params | None = None) -> Block:
    """Sample rows ``[block * BLOCK_ROWS, block * BLOCK_ROWS + n_rows)`` of a seed's data."""
    p = params or load_params()
    rng_u, rng_z = _streams(seed, block)
    u = rng_u.random((n_rows, _N_UNIFORM))
    # One normal per latent variable, plus one for the excess of over-limit balances.
    z = rng_z.standard_normal((n_rows, len(p.variables) + 1))
    pattern, t, state, x = _latent(p, u, z)
    col = {name: x[:, i] for i, name in enumerate(p.variables)}
    has_oneoff = np.array([q.oneoff for q in p.patterns])[pattern]
    has_inst = np.array([q.installments for q in p.patterns])[pattern]
    has_cash = np.array([q.cash_advance for q in p.patterns])[pattern]
    zero_balance, zero_pay, no_min_pay = (state & 1) > 0, (state & 2) > 0, (state & 4) > 0

    cents: dict[str, np.ndarray] = {}
    limit = np.exp(np.minimum(col["log_credit_limit"], _MAX_LOG_MONEY))
    step = np.where(u[:, _U_LIMIT_STEP] < p.credit_limit_multiple_of_500_share, 500.0, 50.0)
    cents["CREDIT_LIMIT"] = (np.maximum(np.rint(limit / step) * step, 50.0) * 100).astype(np.int64)
    cents["BALANCE"] = np.where(zero_balance, 0, _balance(p, cents["CREDIT_LIMIT"], col, u, z))
    # Balance frequency is counted over at most 11 months in the published data.
    d_bal = np.minimum(t, 11)
    k_bal = np.where(zero_balance, 0, _months(col["balance_frequency"], d_bal, 1))
    cents["PAYMENTS"] = np.where(zero_pay, 0, _money(col["log1p_payments"]))
    cents["MINIMUM_PAYMENTS"] = _money(col["log_minimum_payments"], log1p=False)
    k_prc = np.where(zero_pay, 0, _months(col["prc_full_payment"], t, 0))

    cents["ONEOFF_PURCHASES"] = np.where(has_oneoff, _money(col["log1p_oneoff_purchases"]), 0)
    k_one = np.where(has_oneoff, _months(col["oneoff_purchases_frequency"], t, 1), 0)
    cents["INSTALLMENTS_PURCHASES"] = np.where(
        has_inst, _money(col["log1p_installments_purchases"]), 0
    )
    k_inst = np.where(has_inst, _months(col["purchases_installments_frequency"], t, 1), 0)
    # Months with any purchase: at least those of either kind, at most both added up.
    k_pur = np.clip(
        np.rint(col["purchases_frequency"] * t),
        np.maximum(k_one, k_inst),
        np.minimum(t, k_one + k_inst),
    ).astype(np.int64)
    total = cents["ONEOFF_PURCHASES"] + cents["INSTALLMENTS_PURCHASES"]
    quirk = (has_oneoff | has_inst) & (u[:, _U_QUIRK] < p.purchases_not_sum_share)
    factor = 0.4 + 0.55 * u[:, _U_QUIRK_FACTOR]
    cents["PURCHASES"] = np.where(quirk, np.rint(total * factor).astype(np.int64), total)
    trx = np.where(k_pur > 0, _count(col["log_purchases_trx"], k_pur), 0)

    cents["CASH_ADVANCE"] = np.where(has_cash, _money(col["log1p_cash_advance"]), 0)
    k_cash = np.where(has_cash, _months(col["cash_advance_frequency"], t, 1), 0)
    # The published quirk: more cash-advance months than tenure, up to 1.5 times.
    over = has_cash & (u[:, _U_CASH_OVER] < p.cash_advance_frequency_over_1_share)
    k_over = t + 1 + np.floor(u[:, _U_CASH_OVER_MONTHS] * (t // 2)).astype(np.int64)
    k_cash = np.where(over, k_over, k_cash)
    cash_trx = np.where(has_cash, _count(col["log_cash_advance_trx"], k_cash), 0)

    return Block(
        start=block * BLOCK_ROWS,
        cents=cents,
        nulls={
            "CREDIT_LIMIT": u[:, _U_LIMIT_MISSING] < p.credit_limit_missing_share,
            "MINIMUM_PAYMENTS": no_min_pay,
        },
        codes={
            "BALANCE_FREQUENCY": d_bal * CODE_BASE + k_bal,
            "PURCHASES_FREQUENCY": t * CODE_BASE + k_pur,
            "ONEOFF_PURCHASES_FREQUENCY": t * CODE_BASE + k_one,
            "PURCHASES_INSTALLMENTS_FREQUENCY": t * CODE_BASE + k_inst,
            "CASH_ADVANCE_FREQUENCY": t * CODE_BASE + k_cash,
            "PRC_FULL_PAYMENT": t * CODE_BASE + k_prc,
        },
        counts={"CASH_ADVANCE_TRX": cash_trx, "PURCHASES_TRX": trx, "TENURE": t},
    )
