"""Serving benchmark: the functions vs a scikit-learn + Flask baseline, one run, loopback.

Measures (medians of repeated runs; a shared 2-core machine is noisy):
- in-process handler latency for 1 and 100 customers (p50, p99);
- HTTP throughput and p50/p99 at 1 and 8 concurrent connections, emulator vs baseline,
  both under gunicorn with the same workers x threads and the same load generator;
- cold start: process start to the first successful predict.

Model: SEGMENTATION_MODEL_STORE's current model when it has one, else the contract-exact
test bundle (tests/fixtures). Baseline: the same style of model built here from the real
data (features in numpy, SimpleImputer -> StandardScaler -> PCA -> KMeans), whose fitted
arrays are saved as .npz (no pickle) and loaded by a typical Flask app.
Run: ``.venv/bin/python bench/bench_serving.py [--seconds 4]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cc_general.csv"
sys.path[:0] = [str(REPO / "tests"), str(REPO)]
WORKERS, THREADS = os.environ.get("BENCH_WORKERS", "2"), os.environ.get("BENCH_THREADS", "4")
COLUMNS = (
    "balance",
    "credit_limit",
    "purchases_trx",
    "tenure",
    "cash_advance",
    "purchases",
    "payments",
    "prc_full_payment",
)


def baseline_features(cols: dict[str, np.ndarray]) -> np.ndarray:
    """The baseline's features in numpy (what a typical service does by hand)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.column_stack(
            [
                cols["balance"] / cols["credit_limit"],
                cols["purchases_trx"] / cols["tenure"],
                cols["cash_advance"] / (cols["cash_advance"] + cols["purchases"]),
                np.log1p(cols["balance"]),
                np.log1p(cols["purchases"]),
                np.log1p(cols["payments"]),
                cols["prc_full_payment"],
            ]
        )


def baseline_app():
    """gunicorn factory (``bench_serving:baseline_app()``): Flask + a scikit-learn pipeline."""
    from flask import Flask, jsonify, request
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    saved = np.load(os.environ["BENCH_BASELINE"], allow_pickle=False)
    # "Loading": refit on the saved matrix with the saved centres as init (milliseconds,
    # deterministic, no pickle); the cost that matters is importing scikit-learn.
    km = KMeans(len(saved["centers"]), init=saved["centers"], n_init=1, max_iter=1)
    model = make_pipeline(SimpleImputer(), StandardScaler(), PCA(2, random_state=0), km)
    model.fit(saved["X"])
    app = Flask("baseline")

    @app.post("/predict")
    def predict():
        doc = request.get_json()
        rows = doc.get("customers", [doc])
        cols = {
            c: np.array([np.nan if r.get(c) is None else float(r[c]) for r in rows])
            for c in COLUMNS
        }
        X = baseline_features(cols)
        X = np.where(np.isinf(X), np.nan, X)
        dist = model.transform(X)
        labels = model.predict(X)
        return jsonify(
            {
                "results": [
                    {
                        "customer_id": r.get("customer_id"),
                        "segment_id": int(s),
                        "distance": float(d.min()),
                    }
                    for r, s, d in zip(rows, labels, dist, strict=True)
                ]
            }
        )

    return app


def load_customers(n: int) -> list[dict]:
    import csv

    from segmentation.schema import FIELDS

    out = []
    with DATA.open(newline="") as fh:
        for raw in csv.DictReader(fh):
            out.append(
                {f.name: float(raw[f.raw_name]) if raw[f.raw_name] else None for f in FIELDS}
            )
            if len(out) == n:
                return out
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def timed(fn, n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return pct(times, 0.5) * 1e6, pct(times, 0.99) * 1e6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connection_loop(port: int, path: str, body: bytes, stop: float) -> tuple[list, int]:
    """One keep-alive connection posting ``body`` until ``stop``: latencies and non-200s."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies, errors = [], 0
    while time.monotonic() < stop:
        t = time.perf_counter()
        c.request("POST", path, body, {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        latencies.append(time.perf_counter() - t)
        errors += r.status != 200
    c.close()
    return latencies, errors


def _generator_process(port: int, path: str, body: bytes, conns: int, start: float, stop: float):
    # CLOCK_MONOTONIC is system-wide on Linux: every generator starts at the same instant.
    time.sleep(max(0.0, start - time.monotonic()))
    with ThreadPoolExecutor(conns) as pool:
        runs = [pool.submit(_connection_loop, port, path, body, stop) for _ in range(conns)]
        return [r.result() for r in runs]


def load(port: int, path: str, body: bytes, conns: int, seconds: float) -> dict:
    """Closed-loop load: ``conns`` keep-alive connections posting ``body`` for ``seconds``.

    The connections are spread over up to two generator processes, so one Python client's
    GIL does not cap the rate a fast server can reach; both servers face the same generator.
    """
    procs = min(2, conns)
    start = time.monotonic() + 2.0  # time for the spawned generators to import
    stop = start + seconds
    split = [conns // procs + (i < conns % procs) for i in range(procs)]
    with ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = [pool.submit(_generator_process, port, path, body, n, start, stop) for n in split]
        results = [lat_err for r in runs for lat_err in r.result()]
    latencies = [x for lat, _ in results for x in lat]
    return {
        "rps": len(latencies) / seconds,
        "p50_ms": pct(latencies, 0.5) * 1e3,
        "p99_ms": pct(latencies, 0.99) * 1e3,
        "errors": sum(err for _, err in results),
    }


def start(kind: str, port: int, env: dict, workers: str = WORKERS) -> subprocess.Popen:
    if kind == "functions":
        cmd = [
            sys.executable,
            "-m",
            "functions_framework",
            "--target",
            "predict",
            "--source",
            str(REPO / "functions" / "main.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            workers,
            "--threads",
            THREADS,
            "-b",
            f"127.0.0.1:{port}",
            "--chdir",
            str(REPO / "bench"),
            "-k",
            "gthread",
            "--log-level",
            "error",
            "bench_serving:baseline_app()",
        ]
    env = {**os.environ, **env, "WORKERS": workers, "THREADS": THREADS}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def until_ok(port: int, path: str, body: bytes, timeout: float = 60) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("POST", path, body, {"Content-Type": "application/json"})
            if c.getresponse().status == 200:
                return time.perf_counter() - t0
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"port {port} never answered 200")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="per HTTP load run")
    ap.add_argument("--repeats", type=int, default=3, help="cold starts per server")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    store_uri = os.environ.get("SEGMENTATION_MODEL_STORE", "")
    from segmentation.store import open_store

    if not store_uri or open_store(store_uri).read_pointer()[0] is None:
        from fixtures.bundles import ModelSpec, publish

        from segmentation.store import LocalStore

        store_uri = str(tmp / "store")
        publish(LocalStore(store_uri), ModelSpec())
        print(f"model: test bundle (no current model in SEGMENTATION_MODEL_STORE) {store_uri}")
    customers = load_customers(8950)
    all_cols = {c: np.array([np.nan if r[c] is None else r[c] for r in customers]) for c in COLUMNS}
    X = baseline_features(all_cols)
    X = np.where(np.isinf(X), np.nan, X)
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fitted = make_pipeline(
        SimpleImputer(),
        StandardScaler(),
        PCA(2, random_state=0),
        KMeans(4, n_init=4, random_state=0),
    ).fit(X)
    npz = tmp / "baseline.npz"
    np.savez(npz, X=X, centers=fitted[-1].cluster_centers_)
    env = {"SEGMENTATION_MODEL_STORE": store_uri, "BENCH_BASELINE": str(npz)}
    os.environ.update(env)
    one = json.dumps(customers[0]).encode()
    hundred = json.dumps({"customers": customers[:100]}).encode()
    results: dict = {"config": f"gunicorn {WORKERS} workers x {THREADS} threads"}

    # In-process: the shared core handler (what GCF and Lambda call) and the Flask apps.
    # Request logs go to /dev/null: their formatting cost is measured, not terminal speed.
    import io

    import functions_framework

    from segmentation import _jsonlog
    from segmentation.api import Request, Service

    with open(os.devnull, "w") as devnull:
        _jsonlog.configure(stream=devnull)
        service = Service.from_env()
        service.holder.get()
        main_py = str(REPO / "functions" / "main.py")
        ours = functions_framework.create_app("predict", main_py).test_client()
        base = baseline_app().test_client()
        for label, body, n in (("1", one, 3000), ("100", hundred, 300)):

            def core(b: bytes = body) -> None:
                service.predict(
                    Request("POST", "/", "application/json", len(b), io.BytesIO(b).read)
                )

            results[f"inproc_core_{label}"] = timed(core, n)
            results[f"inproc_gcf_flask_{label}"] = timed(
                lambda b=body: ours.post("/", data=b, content_type="application/json"), n
            )
            results[f"inproc_baseline_flask_{label}"] = timed(
                lambda b=body: base.post("/predict", data=b, content_type="application/json"), n
            )
        service.holder.stop()
        logging.getLogger("segmentation").handlers[:] = []

    # HTTP throughput and latency, one server at a time on the same machine.
    for kind, path in (("functions", "/"), ("baseline", "/predict")):
        port = free_port()
        proc = start(kind, port, env)
        try:
            until_ok(port, path, one)
            load(port, path, one, 8, 1.0)  # warm every worker and thread
            for conns in (1, 8):
                results[f"http_{kind}_{conns}conn"] = load(port, path, one, conns, args.seconds)
        finally:
            stop(proc)

    # Cold start: process start to the first 200, single worker, repeated.
    for kind, path in (("functions", "/"), ("baseline", "/predict")):
        samples = []
        for _ in range(args.repeats):
            port = free_port()
            t0 = time.perf_counter()
            proc = start(kind, port, env, workers="1")
            try:
                until_ok(port, path, one)
                samples.append(time.perf_counter() - t0)
            finally:
                stop(proc)
        results[f"cold_start_{kind}_s"] = statistics.median(samples)

    print(json.dumps(results, indent=2, default=lambda x: round(x, 1)))
    f1, b1 = results["http_functions_8conn"]["rps"], results["http_baseline_8conn"]["rps"]
    print(f"in-process p50 1 customer (core): {results['inproc_core_1'][0]:.0f} us (target <= 100)")
    print(f"throughput ratio at 8 connections: {f1 / b1:.1f}x (target >= 5x)")
    cf, cb = results["cold_start_functions_s"], results["cold_start_baseline_s"]
    print(f"cold start: {cf:.2f} s vs {cb:.2f} s = {cf / cb:.2f} of baseline (target <= 0.33)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
