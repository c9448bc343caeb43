"""Lowering one sqlglot expression to the DAG, through :mod:`._semantics`."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from sqlglot import exp

from training.features.sql_onnx._casts import Target, cast
from training.features.sql_onnx._semantics import Bool, Num, SemanticError, Semantics, Value

#: sqlglot's integer types -> (smallest valid value, first invalid value above).
_INT_RANGES: dict[exp.DataType.Type, tuple[float, float]] = {
    exp.DataType.Type.TINYINT: (-(2.0**7), 2.0**7),
    exp.DataType.Type.SMALLINT: (-(2.0**15), 2.0**15),
    exp.DataType.Type.INT: (-(2.0**31), 2.0**31),
    exp.DataType.Type.BIGINT: (-(2.0**63), 2.0**63),
    exp.DataType.Type.INT128: (-(2.0**127), 2.0**127),
    exp.DataType.Type.UTINYINT: (0.0, 2.0**8),
    exp.DataType.Type.USMALLINT: (0.0, 2.0**16),
    exp.DataType.Type.UINT: (0.0, 2.0**32),
    exp.DataType.Type.UBIGINT: (0.0, 2.0**64),
    exp.DataType.Type.UINT128: (0.0, 2.0**128),
}
_ARITH = {exp.Add: "add", exp.Sub: "sub", exp.Mul: "mul", exp.Div: "div", exp.IntDiv: "intdiv"}
_ARITH[exp.Mod] = "mod"
_COMPARE = {exp.EQ: "eq", exp.NEQ: "neq", exp.GT: "gt", exp.GTE: "ge", exp.LT: "lt", exp.LTE: "le"}
_MATH = {exp.Ln: "log", exp.Exp: "exp", exp.Sqrt: "sqrt"}
_ROUNDING = {exp.Floor: "floor", exp.Ceil: "ceil", exp.Round: "round"}
_SAME_TYPE = {exp.Abs: "abs", exp.Sign: "sign"}


def target_of(data_type: exp.DataType) -> Target:
    """The cast target for a SQL type, or :class:`SemanticError` naming it."""
    kind = data_type.this
    if kind == exp.DataType.Type.DOUBLE:
        return Target("double")
    if kind == exp.DataType.Type.FLOAT:
        return Target("float")
    if kind == exp.DataType.Type.BOOLEAN:
        return Target("bool")
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        return Target("int", low, high)
    if kind == exp.DataType.Type.DECIMAL:
        params = [int(p.this.this) for p in data_type.expressions]
        precision, scale = (params + [18, 3][len(params) :])[:2] if params else (18, 3)
        if len(params) == 1:
            scale = 0
        return Target("decimal", high=10.0**precision, scale=scale)
    raise SemanticError(f"CAST to {data_type.sql(dialect='duckdb').upper()}")


def construct_name(node: exp.Expression) -> str:
    """How an unsupported expression is named in errors (never a value)."""
    if isinstance(node, exp.Window):
        return "window function"
    if isinstance(node, exp.AggFunc):
        return f"aggregate function {_function_name(node)}"
    if isinstance(node, exp.Subquery | exp.Select | exp.Exists | exp.SetOperation):
        return "subquery"
    if isinstance(node, exp.Anonymous):
        return f"function {node.name.upper()}"
    if isinstance(node, exp.Func):
        return f"function {_function_name(node)}"
    if isinstance(node, exp.Literal) and node.is_string:
        return "string literal"
    return f"expression {type(node).__name__.upper()}"


def _function_name(node: exp.Func) -> str:
    # As DuckDB spells it (sqlglot's canonical names differ: RANDOM is RAND there).
    return node.sql(dialect="duckdb").split("(", 1)[0].strip().upper()


class Lowerer:
    """Turns sqlglot expressions into values; ``lookup`` resolves a column reference."""

    def __init__(self, sem: Semantics, lookup: Callable[[exp.Column], Value]) -> None:
        self.sem = sem
        self.lookup = lookup

    def __call__(self, node: exp.Expression) -> Value:
        sem = self.sem
        kind = type(node)
        if kind is exp.Column:
            if isinstance(node.this, exp.Star):
                raise SemanticError("* inside an expression")
            return self.lookup(node)
        if kind is exp.Paren or kind is exp.Try:
            return self(node.this)
        if kind is exp.Literal:
            return self._literal(node)
        if kind is exp.Null:
            return sem.null()
        if kind is exp.Boolean:
            return Bool(sem.dag.const(node.this), sem.dag.const(not node.this))
        if kind in _ARITH:
            return sem.arith(_ARITH[kind], self(node.this), self(node.expression))
        if kind is exp.Neg:
            return sem.neg(self(node.this))
        if kind in _COMPARE:
            return sem.compare(_COMPARE[kind], self(node.this), self(node.expression))
        if kind in (exp.NullSafeEQ, exp.NullSafeNEQ):
            negate = kind is exp.NullSafeEQ
            return sem.distinct(self(node.this), self(node.expression), negate=negate)
        if kind is exp.And:
            return sem.and_(self(node.this), self(node.expression))
        if kind is exp.Or:
            return sem.or_(self(node.this), self(node.expression))
        if kind is exp.Not:
            return sem.not_(self(node.this))
        if kind is exp.Is:
            if not isinstance(node.expression, exp.Null):
                raise SemanticError(f"IS {node.expression.sql(dialect='duckdb').upper()}")
            return sem.is_null(self(node.this))
        if kind is exp.Between:
            if node.args.get("symmetric"):
                raise SemanticError("BETWEEN SYMMETRIC")
            value = self(node.this)
            low = sem.compare("ge", value, self(node.args["low"]))
            return sem.and_(low, sem.compare("le", value, self(node.args["high"])))
        if kind is exp.In:
            return self._in(node)
        if kind is exp.Case:
            return self._case(node)
        if kind is exp.If:
            other = node.args.get("false")
            default = self(other) if other is not None else None
            return sem.case([(self(node.this), self(node.args["true"]))], default)
        if kind in (exp.Cast, exp.TryCast):
            return self._cast(node)
        return self._function(node)

    def _function(self, node: exp.Expression) -> Value:
        sem, kind = self.sem, type(node)
        if kind in _MATH:
            return sem.math(_MATH[kind], self(node.this))
        if kind is exp.Log:
            if node.expression is None:  # DuckDB's one-argument LOG is base 10
                return sem.math("log10", self(node.this))
            base = node.this
            if isinstance(base, exp.Literal) and base.this == "10":
                return sem.math("log10", self(node.expression))
            return sem.math("logb", self(base), self(node.expression))
        if kind is exp.Pow:
            return sem.math("pow", self(node.this), self(node.expression))
        if kind in _SAME_TYPE:
            return sem.same_type(_SAME_TYPE[kind], self(node.this))
        if kind in _ROUNDING:
            return self._rounding(node)
        if kind in (exp.Greatest, exp.Least):
            args = [self(a) for a in [node.this, *node.expressions]]
            return sem.extreme("gt" if kind is exp.Greatest else "lt", args)
        if kind is exp.Coalesce:
            return sem.coalesce([self(a) for a in [node.this, *node.expressions]])
        if kind is exp.Nullif:
            return sem.nullif(self(node.this), self(node.expression))
        raise SemanticError(construct_name(node))

    def _rounding(self, node: exp.Expression) -> Value:
        op = _ROUNDING[type(node)]
        digits = node.args.get("decimals")
        if digits is None:
            return self.sem.rounding(op, self(node.this))
        if op != "round" or not (isinstance(digits, exp.Literal) and digits.is_int):
            raise SemanticError(f"{op.upper()} with non-constant digits")
        return self.sem.rounding(op, self(node.this), int(digits.this))

    def _literal(self, node: exp.Literal) -> Num:
        if node.is_string:
            raise SemanticError("string literal")
        text = node.this
        try:
            exact = Decimal(text)
        except InvalidOperation as err:  # pragma: no cover - sqlglot only yields numbers here
            raise SemanticError("numeric literal") from err
        if "e" in text.lower():  # scientific notation is DOUBLE in DuckDB
            return self.sem.const(float(text), "double")
        type_ = "decimal" if "." in text else "int"
        return self.sem.const(float(exact), type_, exact)

    def _in(self, node: exp.In) -> Value:
        if node.args.get("query") is not None or node.args.get("unnest") is not None:
            raise SemanticError("subquery")
        value = self(node.this)
        result: Value | None = None
        for item in node.expressions:
            equal = self.sem.compare("eq", value, self(item))
            result = equal if result is None else self.sem.or_(result, equal)
        if result is None:  # pragma: no cover - the parser refuses IN ()
            raise SemanticError("empty IN list")
        return result

    def _case(self, node: exp.Case) -> Value:
        operand = self(node.this) if node.this is not None else None
        branches = []
        for branch in node.args.get("ifs") or []:
            when = self(branch.this)
            if operand is not None:
                when = self.sem.compare("eq", operand, when)
            branches.append((when, self(branch.args["true"])))
        default = node.args.get("default")
        return self.sem.case(branches, self(default) if default is not None else None)

    def _cast(self, node: exp.Cast) -> Value:
        target = target_of(node.to)
        inner = node.this
        if isinstance(inner, exp.Literal) and inner.is_string:
            # 'nan'::DOUBLE and friends: the only string literals that have a number value
            if target.kind not in ("double", "float"):
                raise SemanticError("string literal")
            try:
                value = float(inner.this)
            except ValueError as err:
                raise SemanticError("string literal") from err
            return cast(self.sem, self.sem.const(value, "double"), target)
        return cast(self.sem, self(inner), target)
