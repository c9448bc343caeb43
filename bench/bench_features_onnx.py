"""Throughput of the compiled feature graph against numpy and a per-request DuckDB query.

Run: ``.venv/bin/python bench/bench_features_onnx.py [--repeats 7] [--sizes 1,1000,...]``.
Prints medians: rows/s and features/s of onnxruntime (2 intra-op threads) on the SQL below
(double `[N, F]`, double `[F, N]` only, and float32 `[N, F]` as the exported graph ships it)
at each batch size, of the same features in numpy, and the latency of one DuckDB query
per customer (the per-request alternative the design rejects).
"""

from __future__ import annotations

import argparse
import statistics
import time

import duckdb
import numpy as np
import onnx
import onnxruntime as ort

from segmentation.schema import FIELD_NAMES
from training.features.sql_onnx import compile_features

#: A realistic ~20-feature model: guarded ratios, caps, LN(1 + x), CASE, COALESCE.
FEATURE_SQL = """
with staged as (select * from "warehouse"."main"."stg_customers"),
ratios as (
    select
        customer_id,
        balance / nullif(credit_limit, 0) as utilization,
        cast(purchases_trx as double) / greatest(cast(tenure as double), 1.0)
            as purchases_per_month,
        case when purchases_trx > 0 then purchases / purchases_trx else 0.0 end as average_ticket,
        oneoff_purchases / nullif(oneoff_purchases + installments_purchases, 0) as oneoff_share,
        installments_purchases / nullif(oneoff_purchases + installments_purchases, 0) as inst_share,
        cash_advance / nullif(cash_advance + purchases, 0) as cash_advance_ratio,
        cast(cash_advance_trx as double) / greatest(cast(tenure as double), 1.0) as ca_intensity,
        payments / nullif(minimum_payments, 0) as payment_ratio,
        *
    from staged
)
select
    customer_id,
    least(utilization, 5.0) as credit_utilization_ratio,
    purchases_per_month,
    average_ticket,
    coalesce(oneoff_share, 0.0) as oneoff_purchase_share,
    coalesce(inst_share, 0.0) as installment_purchase_share,
    coalesce(cash_advance_ratio, 0.0) as cash_advance_ratio,
    ca_intensity as cash_advance_intensity,
    least(payment_ratio, 100.0) as payment_to_minimum_ratio,
    prc_full_payment as full_payment_share,
    case when minimum_payments is null then null
         else 0.5 * least(payment_ratio, 1.0) + 0.5 * prc_full_payment end
        as payment_consistency_index,
    ln(1.0 + balance) as log_balance,
    ln(1.0 + purchases) as log_purchases,
    ln(1.0 + oneoff_purchases) as log_oneoff_purchases,
    ln(1.0 + installments_purchases) as log_installments_purchases,
    ln(1.0 + cash_advance) as log_cash_advance,
    ln(1.0 + payments) as log_payments,
    balance_frequency,
    purchases_frequency,
    cash_advance_frequency,
    cast(tenure as double) as tenure
from ratios
"""


MONEY = ("balance", "purchases", "oneoff_purchases", "installments_purchases", "cash_advance")
MONEY += ("payments",)


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


def numpy_features(c: dict[str, np.ndarray]) -> np.ndarray:
    """The same features, hand-written in numpy (what a scikit-learn service would do)."""

    def ratio(x, y):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(y == 0, np.nan, x / y)

    def least(x, cap):  # SQL LEAST ignores NULL
        return np.where(np.isnan(x), cap, np.minimum(x, cap))

    def fill(x):
        return np.where(np.isnan(x), 0.0, x)

    months = np.maximum(c["tenure"], 1.0)
    parts = c["oneoff_purchases"] + c["installments_purchases"]
    payment_ratio = ratio(c["payments"], c["minimum_payments"])
    with np.errstate(divide="ignore", invalid="ignore"):
        ticket = np.where(c["purchases_trx"] > 0, c["purchases"] / c["purchases_trx"], 0.0)
    columns = [
        least(ratio(c["balance"], c["credit_limit"]), 5.0),
        c["purchases_trx"] / months,
        ticket,
        fill(ratio(c["oneoff_purchases"], parts)),
        fill(ratio(c["installments_purchases"], parts)),
        fill(ratio(c["cash_advance"], c["cash_advance"] + c["purchases"])),
        c["cash_advance_trx"] / months,
        least(payment_ratio, 100.0),
        c["prc_full_payment"],
        np.where(
            np.isnan(c["minimum_payments"]),
            np.nan,
            0.5 * least(payment_ratio, 1.0) + 0.5 * c["prc_full_payment"],
        ),
        *(np.log(1.0 + c[n]) for n in MONEY),
        c["balance_frequency"],
        c["purchases_frequency"],
        c["cash_advance_frequency"],
        c["tenure"],
    ]
    return np.column_stack(columns)


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
    con = duckdb.connect()
    con.execute("attach ':memory:' as warehouse")
    columns = ", ".join(
        f"{n} {'integer' if n.endswith(('_trx', 'tenure')) else 'double'}" for n in row
    )
    con.execute(f"create table warehouse.main.stg_customers (customer_id varchar, {columns})")
    values = ["c1", *(None if np.isnan(v) else v for v in row.values())]
    placeholders = ", ".join("?" for _ in values)

    def query() -> None:
        con.execute("delete from warehouse.main.stg_customers")
        con.execute(f"insert into warehouse.main.stg_customers values ({placeholders})", values)
        con.execute(sql).fetchall()

    return median_seconds(query, repeats=15)


def _session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _column_major_only() -> onnx.ModelProto:
    """The graph with only its ``[F, N]`` output: the features without the row assembly."""
    model = compile_features(FEATURE_SQL, FIELD_NAMES, columns_output="by_column").model
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
    compiled = compile_features(FEATURE_SQL, FIELD_NAMES)
    n_features = len(compiled.feature_names)
    session = _session(compiled.model, args.threads)
    by_column = _session(_column_major_only(), args.threads)
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
        np.testing.assert_allclose(got, numpy_features(rows), rtol=1e-12, equal_nan=True)
        np.testing.assert_array_equal(by_column.run(None, rows)[0], got.T)
        np.testing.assert_array_equal(as_float.run(None, rows)[0], got.astype(np.float32))
        t_onnx = median_seconds(lambda rows=rows: session.run(None, rows), args.repeats)
        t_cols = median_seconds(lambda rows=rows: by_column.run(None, rows), args.repeats)
        t_f32 = median_seconds(lambda rows=rows: as_float.run(None, rows), args.repeats)
        t_numpy = median_seconds(lambda rows=rows: numpy_features(rows), args.repeats)
        print(
            f"{size:>9} {size / t_onnx:>13,.0f} {size * n_features / t_onnx:>14,.0f} "
            f"{size / t_cols:>13,.0f} {size / t_f32:>13,.0f} {size / t_numpy:>13,.0f} "
            f"{t_numpy / t_onnx:>10.2f} "
            f"{t_numpy / t_cols:>11.2f}"
        )
    one = {k: float(v[0]) for k, v in make_rows(1, seed=3).items()}
    latency = duckdb_one_row(FEATURE_SQL, one)
    t_single = median_seconds(
        lambda: session.run(None, {k: np.array([v]) for k, v in one.items()}), args.repeats
    )
    print(
        f"one customer: DuckDB query {latency * 1e6:,.0f} us, "
        f"onnxruntime {t_single * 1e6:,.1f} us ({latency / t_single:,.0f}x)"
    )


if __name__ == "__main__":
    main()
