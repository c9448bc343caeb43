"""The query's shape: parse with sqlglot, check every SELECT is a pure projection, inline CTEs.

Each CTE (and the final SELECT) reads one relation, the base table or an earlier CTE, and
only projects. Its columns resolve to DAG values over the base table's columns, so a CTE's
work is shared by every feature that uses it. A projection may also use an alias defined
earlier in the same SELECT when no column of that name exists (DuckDB's lateral aliases).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from segmentation.errors import FeatureCompileError
from training.features.sql_onnx._lower import Lowerer, construct_name
from training.features.sql_onnx._semantics import Num, SemanticError, Semantics, Value

QUERY = "<query>"
#: SELECT clauses that make a query more than a row-level projection, by their SQL name.
_FORBIDDEN = {
    "joins": "JOIN",
    "laterals": "LATERAL",
    "where": "WHERE",
    "prewhere": "WHERE",
    "group": "GROUP BY",
    "having": "HAVING",
    "qualify": "QUALIFY",
    "windows": "WINDOW",
    "distinct": "DISTINCT",
    "order": "ORDER BY",
    "sort": "ORDER BY",
    "cluster": "CLUSTER BY",
    "distribute": "DISTRIBUTE BY",
    "limit": "LIMIT",
    "offset": "OFFSET",
    "sample": "SAMPLE",
    "pivots": "PIVOT",
    "into": "INTO",
    "connect": "CONNECT BY",
    "match": "MATCH_RECOGNIZE",
    "locks": "FOR UPDATE",
}
_ID = object()  # marks the id column: it may be passed through, never computed with


@dataclass(frozen=True)
class Relation:
    """The columns a FROM clause offers, by lower-case name, in order."""

    name: str
    columns: dict[str, tuple[str, object]]  # lower name -> (name as written, Value or _ID)


def parse(sql: str) -> exp.Select:
    """The single SELECT statement of ``sql``; anything else is a compile error."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except ParseError as err:
        raise FeatureCompileError(QUERY, "SQL syntax", str(err).splitlines()[0]) from None
    if len(statements) != 1:
        raise FeatureCompileError(QUERY, "more than one statement")
    select = statements[0]
    if not isinstance(select, exp.Select):
        raise FeatureCompileError(QUERY, _statement_name(select))
    return select


def sql_sha256(select: exp.Select) -> str:
    """Hash of the SQL as sqlglot normalises it: blind to whitespace, comments, keyword case."""
    text = select.sql(dialect="duckdb", comments=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def resolve(
    select: exp.Select, base: Mapping[str, Value], id_column: str, sem: Semantics
) -> list[tuple[str, Value]]:
    """The final SELECT's features (name, value), the id column left out."""
    base_columns = {id_column.lower(): (id_column, _ID)}
    base_columns.update({name.lower(): (name, value) for name, value in base.items()})
    ctes: dict[str, Relation] = {}
    base_table: list[str] = []
    with_ = select.args.get("with_")
    if with_ is not None:
        if with_.args.get("recursive"):
            raise FeatureCompileError(QUERY, "WITH RECURSIVE")
        for cte in with_.expressions:
            body = cte.this
            name = cte.alias_or_name
            if not isinstance(body, exp.Select):
                raise FeatureCompileError(QUERY, _statement_name(body), f"in CTE {name}")
            source = _source(body, ctes, base_columns, base_table, name)
            ctes[name.lower()] = Relation(name, _project(body, source, sem, name))
    source = _source(select, ctes, base_columns, base_table, None)
    features = []
    for key, (name, value) in _project(select, source, sem, None).items():
        if key == id_column.lower():
            continue
        if value is _ID:
            raise FeatureCompileError(name, f"the id column {id_column} as a feature")
        features.append((name, value))
    if not features:
        raise FeatureCompileError(QUERY, "no feature column")
    return features


def _statement_name(node: exp.Expression) -> str:
    if isinstance(node, exp.SetOperation):
        return type(node).__name__.upper()  # UNION, INTERSECT, EXCEPT
    return f"{type(node).__name__.upper()} statement"


def _source(
    select: exp.Select,
    ctes: Mapping[str, Relation],
    base_columns: dict[str, tuple[str, object]],
    base_table: list[str],
    scope: str | None,
) -> Relation:
    where = f"in CTE {scope}" if scope else ""
    for key, clause in _FORBIDDEN.items():
        if select.args.get(key):
            raise FeatureCompileError(scope or QUERY, clause, where)
    from_ = select.args.get("from_")
    if from_ is None:
        raise FeatureCompileError(scope or QUERY, "SELECT without FROM", where)
    table = from_.this
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        inner = table.this if isinstance(table, exp.Table) else table
        raise FeatureCompileError(scope or QUERY, construct_name(inner), f"in FROM {where}".strip())
    alias = table.alias_or_name
    if not table.args.get("db") and table.name.lower() in ctes:
        return Relation(alias, ctes[table.name.lower()].columns)
    full_name = ".".join(p.name.lower() for p in table.parts)
    if base_table and base_table[0] != full_name:
        raise FeatureCompileError(scope or QUERY, "a second base table", where)
    base_table.append(full_name)
    return Relation(alias, base_columns)


def _project(
    select: exp.Select, source: Relation, sem: Semantics, scope: str | None
) -> dict[str, tuple[str, object]]:
    """The SELECT's output columns in order, each resolved to a value."""
    out: dict[str, tuple[str, object]] = {}
    where = f"in CTE {scope}" if scope else ""

    def lookup(column: exp.Column) -> Value:
        qualifier = column.table
        if qualifier and qualifier.lower() != source.name.lower():
            raise SemanticError(f"reference to unknown table {qualifier}")
        key = column.name.lower()
        found = source.columns.get(key) or (None if qualifier else out.get(key))
        if found is None:
            raise SemanticError(f"unknown column {column.name}")
        if found[1] is _ID:
            raise SemanticError("arithmetic on the id column")
        return found[1]

    lower = Lowerer(sem, lookup)
    for item in select.expressions:
        if isinstance(item, exp.Star) or (
            isinstance(item, exp.Column) and isinstance(item.this, exp.Star)
        ):
            for key, column in _star(item, source, where).items():
                _add(out, key, column, where)
            continue
        if isinstance(item, exp.Alias):
            name, expression = item.alias, item.this
        elif isinstance(item, exp.Column):
            name, expression = item.name, item
        else:
            raise FeatureCompileError(
                item.sql(dialect="duckdb"), "a computed column without an alias", where
            )
        try:
            if isinstance(expression, exp.Column) and not isinstance(expression.this, exp.Star):
                key = expression.name.lower()
                found = source.columns.get(key)
                value = found[1] if found and found[1] is _ID else lower(expression)
            else:
                value = lower(expression)
        except SemanticError as err:
            raise FeatureCompileError(name, str(err), where) from None
        _add(out, name.lower(), (name, value), where)
    return out


def _star(item: exp.Expression, source: Relation, where: str) -> dict[str, tuple[str, object]]:
    star = item if isinstance(item, exp.Star) else item.this
    if isinstance(item, exp.Column) and item.table.lower() != source.name.lower():
        raise FeatureCompileError(QUERY, f"* of unknown table {item.table}", where)
    for key in ("replace", "rename"):
        if star.args.get(key):
            raise FeatureCompileError(QUERY, f"* {key.upper()}", where)
    excluded = {c.name.lower() for c in star.args.get("except_") or []}
    missing = excluded - source.columns.keys()
    if missing:
        raise FeatureCompileError(QUERY, f"* EXCLUDE of unknown column {sorted(missing)[0]}", where)
    return {k: v for k, v in source.columns.items() if k not in excluded}


def _add(out: dict, key: str, column: tuple[str, object], where: str) -> None:
    if key in out and not where:
        raise FeatureCompileError(column[0], "a duplicate column name", where)
    name, suffix = column[0], 0
    while key in out:  # inside a CTE DuckDB renames repeated names: a, a_1, a_2...
        suffix += 1
        key = f"{column[0]}_{suffix}".lower()
        name = f"{column[0]}_{suffix}"
    out[key] = (name, column[1])


def base_values(
    sem: Semantics, input_names: Sequence[str], types: Mapping[str, str]
) -> dict[str, Value]:
    """One graph input per name, typed as the base table types it (FLOAT rounded on entry)."""
    values: dict[str, Value] = {}
    for name in input_names:
        node = sem.dag.input(name)
        type_ = types.get(name, "double")
        if type_ == "float":
            node = sem.dag.op("f32", node)
        values[name] = Num(node, type_)
    return values
