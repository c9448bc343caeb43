"""Compile the feature model's SQL (DuckDB dialect) into an ONNX graph with DuckDB's results.

``compile_features(sql, input_names)`` parses the compiled SELECT of ``customer_features``
with sqlglot, inlines its CTE chain, and translates every output column into ONNX operators
over the staged raw columns (one ``tensor(double) [N]`` input each) producing
``features: tensor(double) [N, F]``. Subexpressions are shared, constants folded, and the
outputs concatenated once.

Supported subset (anything else raises :class:`~segmentation.errors.FeatureCompileError`
naming the feature, or ``<query>``, and the construct): CTE chains of pure projections
over one table (``*``, ``* EXCLUDE``, aliases, lateral aliases); ``+ - * / // %`` and unary
``-``; numeric and boolean literals, NULL; CAST/TRY_CAST/``::`` to DOUBLE, FLOAT, the
integer types, DECIMAL(p, s) and BOOLEAN; NULLIF, COALESCE/IFNULL, LN, LOG (base 10),
LOG(b, x), LOG2, LOG10, EXP, SQRT, ABS, SIGN, POWER/POW/``**``/``^``, FLOOR, CEIL, ROUND,
GREATEST, LEAST; CASE (searched and simple), IF; comparisons, BETWEEN, IN (list),
IS [NOT] NULL, IS [NOT] DISTINCT FROM, AND/OR/NOT; TRY(...).

Semantics are DuckDB 2.0.1's, checked against DuckDB in the tests:

- NULL is NaN in the graph and propagates through arithmetic and functions; POWER
  guards C's ``pow(NaN, 0) = 1``. Comparisons with NULL are NULL; a NULL CASE condition
  is false; AND/OR/NOT are three-valued (each boolean is two masks, TRUE and FALSE).
- NULLIF, COALESCE; GREATEST/LEAST ignore NULL arguments (NULL only when all are).
- IEEE results: ``1/0 = inf``, ``0/0 = NaN``, ``LN(0) = -inf``, ``LN(-1) = NaN``,
  ``SQRT(-1) = NaN``. ``/`` is always float division; ``//`` truncates for integers and
  is plain division for DOUBLE/DECIMAL (as DuckDB 2.0.1 does); ``%`` is C ``fmod``.
- Types follow DuckDB: integer literals are INTEGER, ``1.5`` is DECIMAL (exact when folded),
  ``1e3`` is DOUBLE, input columns are typed by ``input_types``. FLOAT arithmetic is rounded
  to float32 after every operation. Casts to integers round half to even from DOUBLE/FLOAT
  and half away from zero from DECIMAL (2.5 -> 2 and 2.5::DECIMAL -> 3); casts to DECIMAL
  round half away from zero.
- Where DuckDB raises an error for a row (``//`` or integer ``%`` by zero, a cast of NaN,
  inf or an out-of-range value), the graph yields NULL, as ``TRY(...)`` would. Such rows
  fail ``dbt build`` anyway. Integer overflow (DuckDB raises) is not detected: the graph
  computes in double. DECIMAL arithmetic on columns is computed in double (a few ulps).

**NULL and NaN are one value in the graph.** DuckDB tells them apart: NaN made by arithmetic
(``0/0``, ``inf - inf``, ``SQRT(-1)``) is not NULL there, so ``COALESCE(0/0, 1)`` is NaN,
``(0/0) IS NULL`` is false, ``GREATEST(0/0, 1)`` is NaN (DuckDB orders NaN above every
number), ``0/0 = 0/0`` is true; the graph treats that NaN as NULL (1, true, 1, NULL).
Results differ only where an arithmetic NaN meets COALESCE, IS NULL, NULLIF, GREATEST,
LEAST, a comparison or a CASE condition. Feature SQL avoids it by guarding divisors and
domains (``x / NULLIF(y, 0)``, ``LN(1 + x)`` with ``x >= 0``), which also gives the
features the meaning intended: a ratio without denominator is NULL, not NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from segmentation.errors import FeatureCompileError
from training.features.sql_onnx._emit import OUTPUT, build_model
from training.features.sql_onnx._ir import Dag
from training.features.sql_onnx._lower import target_of
from training.features.sql_onnx._parse import base_values, parse, resolve, sql_sha256
from training.features.sql_onnx._refine import Span, refine
from training.features.sql_onnx._semantics import SemanticError, Semantics

__all__ = [
    "OUTPUT",
    "CompiledFeatures",
    "compile_features",
    "default_input_types",
    "evaluate",
    "staged_ranges",
]

#: An input's domain: (minimum, maximum, nullable).
Range = tuple[float, float, bool]


@dataclass(frozen=True)
class CompiledFeatures:
    """The compiled feature graph.

    Attributes
    ----------
    model : inputs one per input name, ``tensor(double) [N]`` (NULL as NaN); output
        ``features``, ``tensor(double) [N, F]``.
    feature_names : the SELECT's output columns except the id column, in order.
    sql_sha256 : sha256 of the SQL as sqlglot normalises it (whitespace, comments and
        keyword case do not change it).
    """

    model: onnx.ModelProto
    feature_names: tuple[str, ...]
    sql_sha256: str
    _rebuild: Callable[..., onnx.ModelProto] | None = field(default=None, repr=False, compare=False)

    def float_model(
        self,
        clustering_output: str | None = None,
        columns: Sequence[int] | None = None,
        *,
        by_column: bool = False,
        input_ranges: Mapping[str, Range] | None = None,
    ) -> onnx.ModelProto:
        """``model`` with ``features`` as float [N, F] (the values rounded to float32).

        With ``clustering_output``, also an output of that name: the features at
        ``columns`` (default: all, in order) as float [N, F'], for the clustering path,
        sharing ``features``' casts: cheaper in onnxruntime than a Gather on ``features``.
        With ``by_column`` that output is laid out ``[F', N]`` (for a column-major consumer).
        ``input_ranges``: as for :func:`compile_features`.
        """
        if self._rebuild is None:
            raise ValueError("this CompiledFeatures cannot be re-emitted (built by hand)")
        if clustering_output in (*[i.name for i in self.model.graph.input], OUTPUT):
            raise ValueError("the clustering output's name must differ from the other names")
        if columns is not None and not all(0 <= j < len(self.feature_names) for j in columns):
            raise ValueError("clustering columns must index the features")
        return self._rebuild(
            float_features=True,
            float_output=clustering_output,
            float_columns=columns,
            float_by_column=by_column,
            input_ranges=input_ranges,
        )

    def subset_model(
        self, columns: Sequence[int], *, input_ranges: Mapping[str, Range] | None = None
    ) -> onnx.ModelProto:
        """A graph computing only the features at ``columns``: ``features`` float
        [N, len(columns)] in that order, each value equal to ``float_model``'s (the same
        nodes, the same rounding); the other features are not computed at all."""
        if self._rebuild is None:
            raise ValueError("this CompiledFeatures cannot be re-emitted (built by hand)")
        if not columns or not all(0 <= j < len(self.feature_names) for j in columns):
            raise ValueError("subset columns must index the features")
        return self._rebuild(float_features=True, input_ranges=input_ranges, subset=columns)


def default_input_types(input_names: Sequence[str]) -> dict[str, str]:
    """SQL types of the staged columns: INTEGER for the schema's integer fields, else DOUBLE."""
    from segmentation.schema import BY_NAME

    return {n: BY_NAME[n].sql_type if n in BY_NAME else "double" for n in input_names}


def staged_ranges(input_names: Sequence[str]) -> dict[str, Range]:
    """Each schema field's domain as staging enforces it: (minimum, maximum, nullable)."""
    from segmentation.schema import BY_NAME

    return {
        n: (BY_NAME[n].minimum, BY_NAME[n].maximum, BY_NAME[n].nullable)
        for n in input_names
        if n in BY_NAME
    }


def compile_features(
    select_sql: str,
    input_names: Sequence[str],
    *,
    id_column: str = "customer_id",
    opset: int = 17,
    input_types: Mapping[str, str] | None = None,
    columns_output: str | None = None,
    input_ranges: Mapping[str, Range] | None = None,
) -> CompiledFeatures:
    """Compile a feature SELECT into one ONNX graph.

    Parameters
    ----------
    select_sql : the compiled SELECT of the feature model (DuckDB dialect, CTEs allowed).
    input_names : the base table's columns, one graph input each, in this order.
    id_column : the row key: passed through by the SQL, not a feature and not an input.
    opset : the ``ai.onnx`` opset of the graph (13 or later).
    input_types : SQL type of each input column in the base table (``"double"``,
        ``"integer"``, ``"bigint"``, ``"float"``, ``"decimal(18,3)"``...); it decides
        integer division and cast rounding. Default: :func:`default_input_types`.
    columns_output : when given, the graph has a second output of this name with the same
        values laid out ``[F, N]`` (much cheaper to build than ``[N, F]`` in onnxruntime,
        for a consumer that can read it column-major, e.g. ``Gemm(transA=1)``).
    input_ranges : the domain the graph is built for, per input: (minimum, maximum,
        nullable), e.g. :func:`staged_ranges`. GREATEST/LEAST and NULL guards that cannot
        matter there are compiled without ``Where`` (several times cheaper in
        onnxruntime); for inputs outside it the results are unspecified. Default: none,
        every result is DuckDB's for any input.

    Returns
    -------
    CompiledFeatures

    Raises
    ------
    FeatureCompileError
        The SQL is not a pure projection of the subset, or uses a column not in
        ``input_names``; the error names the feature (or ``<query>``) and the construct.
    """
    if opset < 13:
        raise ValueError("opset must be 13 or later (Unsqueeze takes axes as an input)")
    if len(set(input_names)) != len(input_names) or not input_names:
        raise ValueError("input_names must be distinct and not empty")
    select = parse(select_sql)
    types = _types(input_names, input_types)
    sem = Semantics(Dag())
    features = resolve(select, base_values(sem, input_names, types), id_column, sem)
    nodes = [sem.as_num(value).node for _, value in features]
    names = tuple(name for name, _ in features)
    digest = sql_sha256(select)
    if columns_output in (*input_names, OUTPUT):
        raise ValueError("columns_output must differ from the input and output names")
    doc = f"features: {', '.join(names)}"

    def rebuild(
        input_ranges: Mapping[str, Range] | None = None,
        subset: Sequence[int] | None = None,
        **extra,
    ) -> onnx.ModelProto:
        outputs = nodes
        if input_ranges:
            spans = {n: Span(lo, hi, nullable) for n, (lo, hi, nullable) in input_ranges.items()}
            outputs = refine(sem.dag, nodes, spans)
        if subset is not None:
            outputs = [outputs[j] for j in subset]
        built = build_model(
            outputs, list(input_names), opset, doc=doc, columns_output=columns_output, **extra
        )
        onnx.helper.set_model_props(built, {"feature_sql_sha256": digest})
        return built

    return CompiledFeatures(
        model=rebuild(input_ranges), feature_names=names, sql_sha256=digest, _rebuild=rebuild
    )


def _types(input_names: Sequence[str], given: Mapping[str, str] | None) -> dict[str, str]:
    """Each input's value type in the semantics' terms (int, decimal, float, double)."""
    import sqlglot
    from sqlglot import exp

    names = given if given is not None else default_input_types(input_names)
    kinds = {"int": "int", "decimal": "decimal", "float": "float", "double": "double"}
    out = {}
    for name in input_names:
        text = names.get(name, "double")
        try:
            target = target_of(exp.DataType.build(text, dialect="duckdb"))
        except (SemanticError, sqlglot.errors.ParseError) as err:
            raise FeatureCompileError(name, f"input type {text}") from err
        if target.kind not in kinds:
            raise FeatureCompileError(name, f"input type {text}")
        out[name] = kinds[target.kind]
    return out


def evaluate(
    compiled: CompiledFeatures, columns: Mapping[str, np.ndarray], *, threads: int = 1
) -> np.ndarray:
    """Run the compiled graph with onnxruntime (CPU) on columns (NaN for NULL): ``[N, F]``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        compiled.model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feeds = {i.name: np.asarray(columns[i.name], dtype=np.float64) for i in session.get_inputs()}
    return session.run([OUTPUT], feeds)[0]
