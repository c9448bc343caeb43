"""CAST and TRY_CAST with DuckDB 2.0.1's rounding and range rules.

What DuckDB's CAST refuses for a row (NaN, inf or out of range) becomes NULL there, which is
TRY_CAST's result. Integers: DOUBLE/FLOAT round half to even, DECIMAL half away from zero;
DECIMAL(p, s): half away from zero at scale s, NULL when the value needs more than p digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from training.features.sql_onnx._semantics import Bool, Num, Semantics, Value


@dataclass(frozen=True)
class Target:
    """A CAST target: ``kind`` is double, float, int, decimal or bool."""

    kind: str
    low: float = 0.0  # int: smallest valid value
    high: float = 0.0  # int: first invalid value above; decimal: 10**precision
    scale: int = 0


def cast(sem: Semantics, a: Value, target: Target) -> Value:
    """CAST/TRY_CAST; what DuckDB's CAST refuses becomes NULL (TRY_CAST's result)."""
    if target.kind == "bool":
        if isinstance(a, Bool):
            return a
        (x,) = sem.numeric(a, allow_bool=True)
        d = sem.dag.op
        zero = d("eq", x.node, sem.dag.const(0.0))
        return Bool(d("not", d("or", zero, d("isnan", x.node))), zero)
    x = sem.as_num(a)
    d, c = sem.dag.op, sem.dag.const
    if target.kind == "double":
        return Num(x.node, "double")
    if target.kind == "float":
        node = sem.f32(x.node)
        overflow = d("and", d("isinf", node), d("not", d("isinf", x.node)))
        return Num(d("where", overflow, sem.nan, node), "float")
    if target.kind == "int":
        if x.type in ("int", "bool", "null"):
            node = x.node
        elif x.type == "decimal":
            node = sem.half_away(x.node)
        else:  # DOUBLE and FLOAT round half to even; NaN and inf fail the range test
            node = d("round", x.node)
        bad = d("or", d("lt", node, c(target.low)), d("ge", node, c(target.high)))
        return Num(d("where", bad, sem.nan, node), "int")
    # DECIMAL(p, s): scale, round half away from zero, refuse |value| >= 10**(p - s)
    if x.exact is not None:  # a literal: exact, as DuckDB casts it
        exact = x.exact.quantize(Decimal(1).scaleb(-target.scale), rounding=ROUND_HALF_UP)
        if abs(exact.scaleb(target.scale)) >= target.high:
            return Num(sem.nan, "decimal")
        return Num(c(float(exact)), "decimal", exact)
    unit = c(10.0**target.scale)
    scaled = d("mul", x.node, unit)
    if x.type not in ("int", "bool", "null"):
        scaled = sem.half_away(scaled)
    bad = d("ge", d("abs", scaled), c(target.high))  # false for NaN, true for inf
    return Num(d("div", d("where", bad, sem.nan, scaled), unit), "decimal")
