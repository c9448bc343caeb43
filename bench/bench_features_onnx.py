"""Throughput of the compiled feature graph against numpy and a per-request DuckDB query.

Run: ``.venv/bin/python bench/bench_features_onnx.py [--repeats 7] [--sizes 1,1000,...]``.
Prints medians: rows/s and features/s of onnxruntime (2 intra-op threads) on the project's
own feature SQL (``customer_features``, compiled by dbt: double `[N, F]`, double `[F, N]`
only, and float32 `[N, F]` as the exported graph ships it) at each batch size, of the same
features in numpy (``_features_numpy``), and the latency of one DuckDB query per customer
(the per-request alternative the design rejects).
"""

from __future__ import annotations

import argparse
import statistics
import time

import duckdb
import numpy as np
import onnx
import onnxruntime as ort
from _features_numpy import numpy_features  # bench/ is sys.path[0]

from segmentation import Settings
from segmentation.schema import BY_NAME, FIELD_NAMES
from training.features import compiled_feature_sql
from training.features.sql_onnx import compile_features


def make_rows(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Customers shaped like the real data: skewed money, small counts, some NULLs."""
    rng = np.random.default_rng(seed)
    cols = {name: rng.uniform(0, 1, n) for name in FIELD_NAMES}
    for name in ("balance", "purchases", "oneoff_purchases", "installments_purchases"):
        cols[name] = np.where(rng.random(n) < 0.25, 0.0, rng.lognormal(6, 1.5, n))
    for name in ("cash_advance", "payments", "minimum_payments", "credit_limit"):
        cols[name] = np.where(rng.random(n) < 0.2, 0.0, rng.lognormal(6.5, 1.2, n))
    cols["purchases_trx"] = rng.poisson(10, n).astype(np.float64)
    cols["cash_advance_trx"] = rng.poisson(3, n).astype(np.float64)
    cols["tenure"] = rng.integers(6, 13, n).astype(np.float64)
    cols["minimum_payments"][rng.random(n) < 0.035] = np.nan
    return cols


def numpy_stacked(c: dict[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    """The same features in numpy (what a scikit-learn service would do), in graph order."""
    features = numpy_features(c)
    return np.column_stack([features[n] for n in names])


def median_seconds(fn, repeats: int, min_time: float = 0.2) -> float:
    """Median wall time of one call, each sample averaging enough calls to last ``min_time``."""
    fn()
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < min_time / 4:
        fn()
        calls += 1
    per_sample = max(1, int(calls * 4 / max(repeats, 1)))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(per_sample):
            fn()
        samples.append((time.perf_counter() - t0) / per_sample)
    return statistics.median(samples)


def duckdb_one_row(sql: str, row: dict[str, float]) -> float:
    """Median latency of one DuckDB query computing the features of one customer."""
    con = duckdb.connect()  # the compiled SQL reads "memory"."main"."stg_customers"
    columns = ", ".join(f"{n} {BY_NAME[n].sql_type}" for n in row)
    con.execute(f"create table memory.main.stg_customers (customer_id varchar, {columns})")
    values = ["c1", *(None if np.isnan(v) else v for v in row.values())]
    placeholders = ", ".join("?" for _ in values)

    def query() -> None:
        con.execute("delete from memory.main.stg_customers")
        con.execute(f"insert into memory.main.stg_customers values ({placeholders})", values)
        con.execute(sql).fetchall()

    return median_seconds(query, repeats=15)


def _session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _column_major_only(sql: str) -> onnx.ModelProto:
    """The graph with only its ``[F, N]`` output: the features without the row assembly."""
    model = compile_features(sql, FIELD_NAMES, columns_output="by_column").model
    graph = model.graph
    kept = [n for n in graph.node if "features" not in n.output]
    del graph.node[:]
    graph.node.extend(kept)
    outputs = [o for o in graph.output if o.name == "by_column"]
    del graph.output[:]
    graph.output.extend(outputs)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", default="1,1000,100000,1000000")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    sql = compiled_feature_sql(Settings())
    compiled = compile_features(sql, FIELD_NAMES)
    names = tuple(compiled.feature_names)
    n_features = len(compiled.feature_names)
    session = _session(compiled.model, args.threads)
    by_column = _session(_column_major_only(sql), args.threads)
    # What the exported graph ships: `features` float32 [N, F] (docs/bundle-format.md).
    as_float = _session(compiled.float_model(), args.threads)
    print(
        f"features: {n_features}, graph nodes: {len(compiled.model.graph.node)}, "
        f"onnxruntime {ort.__version__}, intra_op_num_threads={args.threads}"
    )
    print(
        f"{'rows':>9} {'onnx rows/s':>13} {'onnx feat/s':>14} {'[F,N] rows/s':>13} "
        f"{'f32 rows/s':>13} {'numpy rows/s':>13} {'onnx/numpy':>10} {'[F,N]/numpy':>11}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        rows = make_rows(size)
        got = session.run(None, rows)[0]
        np.testing.assert_allclose(got, numpy_stacked(rows, names), rtol=1e-9, equal_nan=True)
        np.testing.assert_array_equal(by_column.run(None, rows)[0], got.T)
        np.testing.assert_array_equal(as_float.run(None, rows)[0], got.astype(np.float32))
        t_onnx = median_seconds(lambda rows=rows: session.run(None, rows), args.repeats)
        t_cols = median_seconds(lambda rows=rows: by_column.run(None, rows), args.repeats)
        t_f32 = median_seconds(lambda rows=rows: as_float.run(None, rows), args.repeats)
        t_numpy = median_seconds(lambda rows=rows: numpy_stacked(rows, names), args.repeats)
        print(
            f"{size:>9} {size / t_onnx:>13,.0f} {size * n_features / t_onnx:>14,.0f} "
            f"{size / t_cols:>13,.0f} {size / t_f32:>13,.0f} {size / t_numpy:>13,.0f} "
            f"{t_numpy / t_onnx:>10.2f} "
            f"{t_numpy / t_cols:>11.2f}"
        )
    one = {k: float(v[0]) for k, v in make_rows(1, seed=3).items()}
    latency = duckdb_one_row(sql, one)
    t_single = median_seconds(
        lambda: session.run(None, {k: np.array([v]) for k, v in one.items()}), args.repeats
    )
    print(
        f"one customer: DuckDB query {latency * 1e6:,.0f} us, "
        f"onnxruntime {t_single * 1e6:,.1f} us ({latency / t_single:,.0f}x)"
    )


if __name__ == "__main__":
    main()
