"""A tiny expression DAG between SQL and ONNX: hash-consed, constant-folded nodes.

Every node is a column-wise operation on ``double`` (NaN is SQL NULL) or ``bool`` tensors.
Building a node that already exists returns the existing one, so a subexpression written
twice (or inherited by several features through CTEs) is computed once. A node whose
arguments are all constants is evaluated here with numpy, whose IEEE semantics for these
operations are those of onnxruntime's CPU kernels, so folding never changes a result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: Operations on doubles (result double), by arity-agnostic name -> numpy reference.
_DOUBLE_OPS: dict[str, Callable] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "neg": np.negative,
    "fmod": np.fmod,
    "log": np.log,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "pow": np.power,
    "floor": np.floor,
    "ceil": np.ceil,
    "round": np.round,  # half to even, like ONNX Round
    "sign": np.sign,
    "f32": lambda x: np.float64(np.float32(x)),
    "where": np.where,
    "b2d": np.float64,
    # NaN-propagating, like ONNX Max/Min in onnxruntime (only `_refine` emits them).
    "max": np.maximum,
    "min": np.minimum,
}
#: Operations whose result is a bool mask.
_BOOL_OPS: dict[str, Callable] = {
    "isnan": np.isnan,
    "isinf": np.isinf,
    "gt": np.greater,
    "ge": np.greater_equal,
    "lt": np.less,
    "le": np.less_equal,
    "eq": np.equal,
    "and": np.logical_and,
    "or": np.logical_or,
    "not": np.logical_not,
}
#: Operations where a constant argument identical on both sides makes the result that side.
_COMMUTATIVE = frozenset({"add", "mul", "eq", "and", "or"})


@dataclass(frozen=True, eq=False)
class Node:
    """One operation of the DAG. ``value`` holds a constant's value or an input's name."""

    op: str
    args: tuple[Node, ...] = ()
    value: object = None
    is_bool: bool = False
    uid: int = field(default=0, compare=False)

    @property
    def is_const(self) -> bool:
        return self.op == "const"

    def __repr__(self) -> str:
        if self.op in ("const", "input"):
            return f"{self.op}({self.value!r})"
        return f"{self.op}({', '.join(map(repr, self.args))})"


class Dag:
    """Builds nodes, sharing identical ones and folding constants."""

    def __init__(self) -> None:
        self._memo: dict[tuple, Node] = {}

    def _intern(self, op: str, args: tuple[Node, ...], value: object, is_bool: bool) -> Node:
        key = (op, tuple(a.uid for a in args), _const_key(value), is_bool)
        node = self._memo.get(key)
        if node is None:
            node = Node(op, args, value, is_bool, uid=len(self._memo) + 1)
            self._memo[key] = node
        return node

    def input(self, name: str) -> Node:
        return self._intern("input", (), name, False)

    def const(self, value: float | bool) -> Node:
        if isinstance(value, bool | np.bool_):
            return self._intern("const", (), bool(value), True)
        return self._intern("const", (), float(value), False)

    def op(self, op: str, *args: Node) -> Node:
        """The node ``op(*args)``, folded or simplified when that is exact."""
        is_bool = op in _BOOL_OPS
        if op not in _DOUBLE_OPS and not is_bool:
            raise ValueError(f"unknown operation {op}")
        if op in _COMMUTATIVE and args[0].is_const and not args[1].is_const:
            args = (args[1], args[0])  # constants on the right: one key per expression
        if all(a.is_const for a in args):
            with np.errstate(all="ignore"):
                folded = (_BOOL_OPS if is_bool else _DOUBLE_OPS)[op](*(a.value for a in args))
            return self.const(bool(folded) if is_bool else float(folded))
        simpler = _simplify(self, op, args)
        if simpler is not None:
            return simpler
        return self._intern(op, args, None, is_bool)


def _const_key(value: object) -> object:
    # NaN != NaN, and 0.0 == -0.0: key floats by their bits so both are handled exactly.
    if isinstance(value, float):
        return ("f", np.float64(value).tobytes())
    return value


def _is(node: Node, value: float | bool) -> bool:
    if not node.is_const:
        return False
    if isinstance(value, bool):
        return node.value is value
    return (not math.isnan(node.value)) and node.value == value and not node.is_bool


def _simplify(dag: Dag, op: str, args: tuple[Node, ...]) -> Node | None:
    """Exact identities only (x + 0 is not one: -0.0 + 0 is +0.0)."""
    a = args[0]
    b = args[1] if len(args) > 1 else None
    if op in ("mul", "div") and _is(b, 1.0):
        return a
    if op == "sub" and _is(b, 0.0) and not math.copysign(1.0, b.value) < 0:
        return a
    if op == "where":
        cond, then, other = args
        if then is other:
            return then
        if cond.is_const:
            return then if cond.value else other
    if op == "and":
        if _is(b, True):
            return a
        if _is(b, False):
            return b
    if op == "or":
        if _is(b, False):
            return a
        if _is(b, True):
            return b
    if op == "not" and a.op == "not":
        return a.args[0]
    return None


def reachable(outputs: list[Node]) -> list[Node]:
    """Nodes needed by ``outputs``, each after its arguments (topological order)."""
    order: list[Node] = []
    seen: set[int] = set()
    stack: list[tuple[Node, bool]] = [(n, False) for n in reversed(outputs)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node.uid in seen:
            continue
        seen.add(node.uid)
        stack.append((node, True))
        stack.extend((a, False) for a in reversed(node.args) if a.uid not in seen)
    return order
