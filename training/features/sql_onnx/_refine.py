"""Value-range facts about the inputs and the Where nodes they make unnecessary (opt-in).

onnxruntime's ``Where`` costs 2 to 4 ns per element, several times an arithmetic node,
and the DuckDB-exact lowering of GREATEST/LEAST and of NULL guards needs one each. Given
what the staged table guarantees (each column within its bounds, NOT NULL columns never
NULL: staging quarantines other rows and serving refuses them), some are provably
unnecessary. For inputs within the declared spans the rewritten outputs equal the
original ones on every row; outside them they are unspecified. Rewrites:

- ``GREATEST(v, c)`` / ``LEAST(v, c)`` (``Where(v > c, v, c)``) is ``Max``/``Min(v, c)``
  where ``v`` cannot be NaN (both propagate NaN, the SQL functions ignore NULL).
- ``CASE WHEN x IS NULL THEN NULL ELSE e END`` (``Where(IsNaN(x), NaN, e)``): ``e`` is
  rewritten knowing ``x`` is not NULL, and the Where is dropped when ``e`` is NaN wherever
  ``x`` is (built from ``x`` by NaN-propagating arithmetic only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from training.features.sql_onnx._ir import Dag, Node

INF = math.inf
#: Operations whose result is NaN whenever one argument is (``pow`` is not: 1 ** NaN = 1).
_STRICT = frozenset(
    {"add", "sub", "mul", "div", "neg", "fmod", "log", "exp", "sqrt", "abs", "floor", "ceil"}
    | {"round", "sign", "f32", "max", "min"}
)


@dataclass(frozen=True)
class Span:
    """What is known of a value: within ``[lo, hi]``, and NaN only if ``nan``."""

    lo: float = -INF
    hi: float = INF
    nan: bool = True

    @property
    def finite(self) -> bool:
        return not self.nan and math.isfinite(self.lo) and math.isfinite(self.hi)


UNKNOWN = Span()
Assumed = frozenset[int]  # uids of nodes known not to be NaN in the current branch


class Refiner:
    """Rewrites DAG outputs under input spans (``inputs``: column name -> Span)."""

    def __init__(self, dag: Dag, inputs: Mapping[str, Span]) -> None:
        self.dag = dag
        self.inputs = inputs
        self._spans: dict[tuple[int, Assumed], Span] = {}
        self._done: dict[tuple[int, Assumed], Node] = {}
        self._strict: dict[tuple[int, int], bool] = {}

    def __call__(self, outputs: Sequence[Node]) -> list[Node]:
        return [self.rewrite(node, frozenset()) for node in outputs]

    def rewrite(self, node: Node, assumed: Assumed) -> Node:
        key = (node.uid, assumed)
        if key not in self._done:
            self._done[key] = self._rewrite(node, assumed)
        return self._done[key]

    def _rewrite(self, node: Node, assumed: Assumed) -> Node:
        if not node.args:
            return node
        op = self.dag.op
        if node.op == "where" and node.args[0].op == "isnan" and _is_nan(node.args[1]):
            guarded = self.rewrite(node.args[0].args[0], assumed)
            other = self.rewrite(node.args[2], assumed | {guarded.uid})
            if self.strict(other, guarded):  # NaN wherever the guard is: no Where
                return other
            return op("where", op("isnan", guarded), node.args[1], other)
        args = [self.rewrite(a, assumed) for a in node.args]
        if node.op == "where" and args[2].is_const and not math.isnan(args[2].value):
            cond, then, other = args
            pick = {"gt": "max", "lt": "min"}.get(cond.op)
            if pick and cond.args == (then, other) and not self.span(then, assumed).nan:
                return op(pick, then, other)
        return op(node.op, *args)

    def strict(self, node: Node, x: Node) -> bool:
        """Whether ``node`` is NaN wherever ``x`` is."""
        key = (node.uid, x.uid)
        if key not in self._strict:
            self._strict[key] = node is x or (
                node.op in _STRICT and any(self.strict(a, x) for a in node.args)
            )
        return self._strict[key]

    def span(self, node: Node, assumed: Assumed) -> Span:
        key = (node.uid, assumed)
        if key not in self._spans:
            span = self._span(node, assumed)
            if node.uid in assumed:
                span = Span(span.lo, span.hi, nan=False)
            self._spans[key] = span
        return self._spans[key]

    def _span(self, node: Node, assumed: Assumed) -> Span:
        if node.op == "input":
            return self.inputs.get(node.value, UNKNOWN)
        if node.op == "const":
            value = float(node.value)
            return Span(value, value, math.isnan(value))
        if node.op == "b2d":
            return Span(0.0, 1.0, nan=False)
        spans = [self.span(a, assumed) for a in node.args]
        if node.op == "where":
            spans = spans[1:]
        if node.op not in _CORNERS or not all(s.finite for s in spans):
            return UNKNOWN
        if node.op == "where":  # either branch
            return Span(min(s.lo for s in spans), max(s.hi for s in spans), nan=False)
        a, b = spans if len(spans) == 2 else (spans[0], spans[0])
        if node.op == "div" and not (b.lo > 0 or b.hi < 0):
            return UNKNOWN  # a divisor range holding 0: inf or NaN possible
        corners = [_CORNERS[node.op](x, y) for x in (a.lo, a.hi) for y in (b.lo, b.hi)]
        if node.op in ("add", "sub", "mul", "div"):
            return _finite_span(corners)
        return Span(min(corners), max(corners), nan=False)


def _finite_span(corners: list[float]) -> Span:
    lo, hi = min(corners), max(corners)
    # Bounds near overflow could round to inf: stay conservative there.
    return Span(lo, hi, nan=False) if max(abs(lo), abs(hi)) < 1e300 else UNKNOWN


#: Interval arithmetic by corners (monotone in each argument over the allowed spans).
_CORNERS = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / y,
    "max": max,
    "min": min,
    "where": min,  # not used for corners: see `_span`
}


def _is_nan(node: Node) -> bool:
    return node.is_const and not node.is_bool and math.isnan(node.value)


def refine(dag: Dag, outputs: Sequence[Node], inputs: Mapping[str, Span]) -> list[Node]:
    """``outputs`` rewritten with fewer Where nodes, valid for inputs within ``inputs``."""
    return Refiner(dag, inputs)(outputs)
