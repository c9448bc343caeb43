"""The generator's fitted parameters (``params.json``), loaded once into arrays."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

PARAMS_PATH = Path(__file__).resolve().with_name("params.json")


@dataclass(frozen=True)
class Component:
    """One behavioural archetype inside an activity pattern."""

    weight: float
    mean: np.ndarray  # (d,)
    chol: np.ndarray  # (d, d) lower Cholesky factor of the covariance
    tenure_cdf: np.ndarray  # (len(tenures),)


@dataclass(frozen=True)
class Pattern:
    """Customers sharing which monetary columns are non-zero."""

    oneoff: bool
    installments: bool
    cash_advance: bool
    share: float
    columns: np.ndarray  # indices into Params.variables of this pattern's latent variables
    state_cdf: np.ndarray  # (8,) rare states bitmask: 1 zero balance, 2 zero pay, 4 no min pay
    components: tuple[Component, ...]
    component_cdf: np.ndarray


@dataclass(frozen=True)
class Params:
    """Everything the sampler needs, as arrays."""

    variables: tuple[str, ...]
    tenures: np.ndarray
    patterns: tuple[Pattern, ...]
    pattern_cdf: np.ndarray
    purchases_not_sum_share: float
    cash_advance_frequency_over_1_share: float
    credit_limit_missing_share: float
    credit_limit_multiple_of_500_share: float
    balance_above_limit_share: float
    over_limit_log_excess_mean: float
    over_limit_log_excess_std: float

    def index(self, name: str) -> int:
        return self.variables.index(name)


def _cdf(p: list[float]) -> np.ndarray:
    c = np.cumsum(np.asarray(p, dtype=np.float64))
    c /= c[-1]
    c[-1] = 1.0  # searchsorted of a uniform in [0, 1) always lands inside
    return c


def _cholesky(cov: np.ndarray) -> np.ndarray:
    # The stored covariances are rounded to 9 significant digits; a tiny ridge keeps them
    # positive definite whatever the rounding did.
    return np.linalg.cholesky(cov + 1e-9 * np.eye(len(cov)))


@cache
def load_params(path: Path = PARAMS_PATH) -> Params:
    """Read and validate ``params.json`` (cached: parsed once per process)."""
    doc = json.loads(Path(path).read_text())
    variables = tuple(doc["variables"])
    patterns = []
    for p in doc["patterns"]:
        comps = tuple(
            Component(
                weight=c["weight"],
                mean=np.asarray(c["mean"], dtype=np.float64),
                chol=_cholesky(np.asarray(c["covariance"], dtype=np.float64)),
                tenure_cdf=_cdf(c["tenure"]),
            )
            for c in p["components"]
        )
        patterns.append(
            Pattern(
                oneoff=p["oneoff"],
                installments=p["installments"],
                cash_advance=p["cash_advance"],
                share=p["share"],
                columns=np.array([variables.index(v) for v in p["variables"]]),
                state_cdf=_cdf(p["states"]),
                components=comps,
                component_cdf=_cdf([c.weight for c in comps]),
            )
        )
    q = doc["quirks"]
    return Params(
        variables=variables,
        tenures=np.asarray(doc["tenures"], dtype=np.int64),
        patterns=tuple(patterns),
        pattern_cdf=_cdf([p.share for p in patterns]),
        purchases_not_sum_share=q["purchases_not_sum_share"],
        cash_advance_frequency_over_1_share=q["cash_advance_frequency_over_1_share"],
        credit_limit_missing_share=q["credit_limit_missing_share"],
        credit_limit_multiple_of_500_share=q["credit_limit_multiple_of_500_share"],
        balance_above_limit_share=q["balance_above_limit_share"],
        over_limit_log_excess_mean=q["balance_above_limit_log_excess_mean"],
        over_limit_log_excess_std=q["balance_above_limit_log_excess_std"],
    )
