"""DuckDB 2.0.1 semantics of the supported operations, expressed as DAG nodes.

A SQL value is a :class:`Num` (a double column, NaN for NULL, with its DuckDB type) or a
:class:`Bool` (two masks: where it is TRUE and where it is FALSE; NULL is neither), which
makes three-valued logic exact without NaN checks: ``a > b`` is TRUE where ONNX ``Greater``
holds and FALSE where ``LessOrEqual`` holds, and both are false when either side is NaN.
Where DuckDB raises an error for a row (integer division by zero, a cast out of range),
the graph yields NULL, as DuckDB's ``TRY(...)`` would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from training.features.sql_onnx._ir import Dag, Node

NAN = math.nan
#: Numeric types from narrowest to widest, as DuckDB picks a common type.
_ORDER = ("int", "decimal", "float", "double")


class SemanticError(Exception):
    """An operation DuckDB would refuse (or that is outside the subset); names the construct."""


@dataclass(frozen=True)
class Num:
    """A numeric (or materialised boolean) column; ``exact`` keeps literal constants exact."""

    node: Node
    type: str  # "int", "decimal", "float", "double", "bool" (0/1/NaN) or "null"
    exact: Decimal | None = None


@dataclass(frozen=True)
class Bool:
    """A SQL boolean as two masks; NULL is where neither holds."""

    t: Node
    f: Node


Value = Num | Bool


class Semantics:
    """Builds DuckDB-exact operations on a :class:`Dag`."""

    def __init__(self, dag: Dag) -> None:
        self.dag = dag
        self.nan = dag.const(NAN)

    # ----------------------------------------------------------------- conversions
    def const(self, value: float, type_: str, exact: Decimal | None = None) -> Num:
        return Num(self.dag.const(value), type_, exact)

    def as_num(self, v: Value) -> Num:
        """A value usable as a number; a boolean becomes 1/0/NULL."""
        if isinstance(v, Num):
            return v
        op, d = self.dag.op, self.dag.const
        return Num(op("where", v.t, d(1.0), op("where", v.f, d(0.0), self.nan)), "bool")

    def as_bool(self, v: Value) -> Bool:
        if isinstance(v, Bool):
            return v
        if v.type == "null":
            return Bool(self.dag.const(False), self.dag.const(False))
        if v.type != "bool":
            raise SemanticError(f"non-boolean condition of type {v.type}")
        op, d = self.dag.op, self.dag.const
        return Bool(op("eq", v.node, d(1.0)), op("eq", v.node, d(0.0)))

    def numeric(self, *values: Value, allow_bool: bool = False) -> list[Num]:
        nums = [self.as_num(v) for v in values]
        if not allow_bool and any(n.type == "bool" for n in nums):
            raise SemanticError("arithmetic on a boolean")
        return nums

    def unify(self, nums: list[Num]) -> tuple[str, list[Node]]:
        """DuckDB's common type of ``nums`` and their nodes converted to it."""
        types = {n.type for n in nums} - {"null"}
        if "bool" in types:
            if types != {"bool"}:
                raise SemanticError("boolean mixed with numbers")
            return "bool", [n.node for n in nums]
        common = max(types, key=_ORDER.index) if types else "null"
        if common == "float":  # other values are rounded to FLOAT (REAL) first
            return common, [n.node if n.type == "float" else self.f32(n.node) for n in nums]
        return common, [n.node for n in nums]

    def f32(self, node: Node) -> Node:
        return self.dag.op("f32", node)

    # ----------------------------------------------------------------- arithmetic
    def arith(self, op: str, a: Value, b: Value) -> Num:
        """``+ - * / // %`` with DuckDB's result types and division rules."""
        x, y = self.numeric(a, b)
        common, (p, q) = self.unify([x, y])
        dag = self.dag
        if op in ("add", "sub", "mul") and x.exact is not None and y.exact is not None:
            # DuckDB folds INTEGER/DECIMAL literals exactly (0.1 + 0.2 - 0.3 is 0).
            exact = {"add": x.exact + y.exact, "sub": x.exact - y.exact}.get(op, x.exact * y.exact)
            return Num(dag.const(float(exact)), common, exact)
        if op == "intdiv":
            quotient = dag.op("div", p, q)
            if common == "int":  # truncating integer division
                quotient = dag.op(
                    "where",
                    dag.op("lt", quotient, dag.const(0.0)),
                    dag.op("ceil", quotient),
                    dag.op("floor", quotient),
                )
            else:  # DOUBLE, DECIMAL and FLOAT `//` is plain division in DuckDB 2.0.1
                common = "double" if common == "decimal" else common
            # DuckDB raises "Division by zero" for `//`: the graph yields NULL.
            node = dag.op("where", dag.op("eq", q, dag.const(0.0)), self.nan, quotient)
        elif op == "div":
            node = dag.op("div", p, q)
            common = "float" if common == "float" else "double"
        elif op == "mod":
            node = dag.op("fmod", p, q)  # C fmod: sign of the dividend, x % 0 is NaN
        else:
            node = dag.op(op, p, q)
        if common == "float" and op != "mod":
            node = self.f32(node)
        return Num(node, common)

    def neg(self, a: Value) -> Num:
        (x,) = self.numeric(a)
        exact = -x.exact if x.exact is not None else None
        return Num(self.dag.op("neg", x.node), x.type, exact)

    def math(self, op: str, *args: Value) -> Num:
        """LN, EXP, SQRT, POWER and friends: computed in DOUBLE."""
        nums = self.numeric(*args)
        nodes = [n.node for n in nums]
        dag = self.dag
        if op == "log10":
            return Num(dag.op("div", dag.op("log", nodes[0]), dag.const(math.log(10.0))), "double")
        if op == "logb":  # LOG(base, x)
            return Num(dag.op("div", dag.op("log", nodes[1]), dag.op("log", nodes[0])), "double")
        if op == "pow":
            base, exponent = nodes
            node = dag.op("pow", base, exponent)
            # C pow gives 1 for NaN**0 and 1**NaN; SQL gives NULL when either side is NULL.
            if not (exponent.is_const and exponent.value != 0 and not math.isnan(exponent.value)):
                node = dag.op("where", dag.op("isnan", base), self.nan, node)
            if not (base.is_const and base.value != 1 and not math.isnan(base.value)):
                node = dag.op("where", dag.op("isnan", exponent), self.nan, node)
            return Num(node, "double")
        return Num(dag.op(op, *nodes), "double")

    def same_type(self, op: str, a: Value) -> Num:
        """ABS and SIGN keep the argument's type (SIGN of a float is exact anyway)."""
        (x,) = self.numeric(a)
        return Num(self.dag.op(op, x.node), x.type)

    def rounding(self, op: str, a: Value, digits: int | None = None) -> Num:
        """FLOOR, CEIL and ROUND(x[, digits]); ROUND rounds half away from zero."""
        (x,) = self.numeric(a)
        type_ = "double" if x.type == "int" and op != "round" else x.type
        if op != "round":
            return Num(self.dag.op(op, x.node), type_)
        if digits is None or digits == 0:
            return Num(self.half_away(x.node), type_)
        d, scale = self.dag.op, self.dag.const(10.0**digits)
        rounded = d("div", self.half_away(d("mul", x.node, scale)), scale)
        # DuckDB returns the input itself when scaling overflows (inf)
        return Num(d("where", d("isinf", rounded), x.node, rounded), type_)

    def half_away(self, node: Node) -> Node:
        op = self.dag.op
        magnitude = op("floor", op("add", op("abs", node), self.dag.const(0.5)))
        return op("mul", op("sign", node), magnitude)

    # ----------------------------------------------------------------- comparisons
    def compare(self, op: str, a: Value, b: Value) -> Bool:
        """``= <> < <= > >=``: NULL when either side is NULL (both masks false)."""
        _, (p, q) = self.unify(self.numeric(a, b, allow_bool=True))
        d = self.dag.op
        if op in ("eq", "neq"):
            equal, differ = d("eq", p, q), d("or", d("lt", p, q), d("gt", p, q))
            return Bool(equal, differ) if op == "eq" else Bool(differ, equal)
        inverse = {"gt": "le", "ge": "lt", "lt": "ge", "le": "gt"}[op]
        return Bool(d(op, p, q), d(inverse, p, q))

    def distinct(self, a: Value, b: Value, negate: bool) -> Bool:
        """IS [NOT] DISTINCT FROM: NULL equals NULL, never NULL itself."""
        _, (p, q) = self.unify(self.numeric(a, b, allow_bool=True))
        d = self.dag.op
        same = d("or", d("eq", p, q), d("and", d("isnan", p), d("isnan", q)))
        other = d("not", same)
        return Bool(same, other) if negate else Bool(other, same)

    def is_null(self, a: Value) -> Bool:
        d = self.dag.op
        if isinstance(a, Bool):
            known = d("or", a.t, a.f)
            return Bool(d("not", known), known)
        isnan = d("isnan", a.node)
        return Bool(isnan, d("not", isnan))

    def and_(self, a: Value, b: Value) -> Bool:
        x, y = self.as_bool(a), self.as_bool(b)
        d = self.dag.op
        return Bool(d("and", x.t, y.t), d("or", x.f, y.f))

    def or_(self, a: Value, b: Value) -> Bool:
        x, y = self.as_bool(a), self.as_bool(b)
        d = self.dag.op
        return Bool(d("or", x.t, y.t), d("and", x.f, y.f))

    def not_(self, a: Value) -> Bool:
        x = self.as_bool(a)
        return Bool(x.f, x.t)

    # ----------------------------------------------------------------- conditionals
    def case(self, branches: list[tuple[Value, Value]], default: Value | None) -> Num:
        """Searched CASE: a NULL condition counts as false."""
        conditions = [self.as_bool(c).t for c, _ in branches]
        results = [r for _, r in branches] + [default if default is not None else self.null()]
        type_, nodes = self.unify(self.numeric(*results, allow_bool=True))
        node = nodes[-1]
        for cond, result in zip(reversed(conditions), reversed(nodes[:-1]), strict=True):
            node = self.dag.op("where", cond, result, node)
        return Num(node, type_)

    def null(self) -> Num:
        return Num(self.nan, "null")

    def coalesce(self, args: list[Value]) -> Num:
        type_, nodes = self.unify(self.numeric(*args, allow_bool=True))
        d = self.dag.op
        node = nodes[-1]
        for earlier in reversed(nodes[:-1]):
            node = d("where", d("isnan", earlier), node, earlier)
        return Num(node, type_)

    def nullif(self, a: Value, b: Value) -> Num:
        """NULLIF(a, b): NULL where a = b, else a (with a's type)."""
        x = self.as_num(a)
        _, (p, q) = self.unify(self.numeric(a, b, allow_bool=True))
        d = self.dag.op
        if q.is_const and math.isnan(q.value):  # NULLIF(x, NULL) never matches
            return x
        if q.is_const:
            # Arithmetic instead of Where (several times slower in onnxruntime): the mask
            # |sign(p - q)| is 1 where p <> q, 0 where equal, NaN where p is NULL.
            mask = d("abs", d("sign", p if q.value == 0 else d("sub", p, q)))
            if q.value == 0 and p is x.node:  # x / 1 = x, 0 / 0 = NaN
                return Num(d("div", x.node, mask), x.type)
            return Num(d("mul", x.node, d("div", mask, mask)), x.type)  # x * (1 or NaN)
        equal = self.compare("eq", a, b).t
        return Num(d("where", equal, self.nan, x.node), x.type)

    def extreme(self, op: str, args: list[Value]) -> Num:
        """GREATEST/LEAST: NULL arguments are ignored; NULL only when all are NULL."""
        type_, nodes = self.unify(self.numeric(*args))
        d = self.dag.op
        constants = [n.value for n in nodes if n.is_const and not math.isnan(n.value)]
        variables = [n for n in nodes if not n.is_const]
        pick = max if op == "gt" else min
        node = self.dag.const(pick(constants)) if constants else None
        for var in variables:
            if node is None:
                node = var
            elif node.is_const:  # comparison with NaN is false: picks the constant
                node = d("where", d(op, var, node), var, node)
            else:
                node = d("where", d("or", d(op, var, node), d("isnan", node)), var, node)
        return Num(node if node is not None else self.nan, type_)
