"""Serving benchmark: the functions vs the seed's FastAPI + scikit-learn service, loopback.

Measures (one run, same machine; medians of repeats, a shared 2-core machine is noisy):
- in-process core handler latency for 1 and 100 customers (p50, p99): parsing,
  validation, scoring, the response and the request log;
- HTTP throughput and latency at 1 and 8 connections, driven by wrk (C, not Python, so the
  generator does not cap a fast server): the predict function under functions-framework
  (gunicorn, WORKERS x THREADS) vs the seed service under uvicorn with the same workers;
- cold start: process start to the first 200 from predict, the model read from the store
  named by SEGMENTATION_MODEL_STORE (an s3:// store on a moto server works too), vs the
  seed service's start.

Model: SEGMENTATION_MODEL_STORE's current model when it has one, else the contract-exact
test bundle (tests/fixtures). The seed: features in numpy, mean imputation ->
StandardScaler -> PCA(0.90) -> KMeans(4) fitted here on the real file, its arrays saved as
.npz (no pickle), served by FastAPI with a pydantic request model, as the seed shipped it.
wrk comes from Debian's packages (``make bench-tools``).
Run: ``.venv/bin/python bench/bench_serving.py [--seconds 4]``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cc_general.csv"
sys.path[:0] = [str(REPO / "tests"), str(REPO)]
WORKERS, THREADS = os.environ.get("BENCH_WORKERS", "2"), os.environ.get("BENCH_THREADS", "4")
#: The seed service's inputs and its hand-written features (what it computed in numpy).
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


def seed_features(cols: dict[str, np.ndarray]) -> np.ndarray:
    """The seed's features in numpy."""
    with np.errstate(divide="ignore", invalid="ignore"):
        X = np.column_stack(
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
    return np.where(np.isinf(X), np.nan, X)


def seed_pipeline():
    """The seed's model: mean imputation, StandardScaler, PCA(0.90), KMeans(4)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        SimpleImputer(strategy="mean"),
        StandardScaler(),
        PCA(0.90, random_state=0),
        KMeans(4, n_init=4, random_state=0),
    )


def seed_app():
    """The seed service (``uvicorn --factory bench_serving:seed_app``): FastAPI + pydantic +
    a scikit-learn pipeline, loaded from the .npz the bench saved (no pickle)."""
    from fastapi import FastAPI
    from pydantic import BaseModel

    saved = np.load(os.environ["BENCH_BASELINE"], allow_pickle=False)
    model = seed_pipeline()
    # "Loading": refit with the saved centres as the start, one iteration (milliseconds,
    # deterministic); the cost that matters is importing scikit-learn.
    model.set_params(kmeans__init=saved["centers"], kmeans__n_init=1, kmeans__max_iter=1)
    model.fit(saved["X"])

    class Customer(BaseModel):
        customer_id: str | None = None
        balance: float | None = None
        credit_limit: float | None = None
        purchases_trx: float | None = None
        tenure: float | None = None
        cash_advance: float | None = None
        purchases: float | None = None
        payments: float | None = None
        prc_full_payment: float | None = None

    app = FastAPI()

    def predict(customer: Customer) -> dict:
        values = {c: getattr(customer, c) for c in COLUMNS}
        cols = {c: np.array([np.nan if v is None else v]) for c, v in values.items()}
        X = seed_features(cols)
        distances = model.transform(X)
        label = int(model.predict(X)[0])
        return {
            "customer_id": customer.customer_id,
            "segment_id": label,
            "distance": float(distances[0].min()),
        }

    # This module's annotations are strings (PEP 563); FastAPI needs the class itself.
    predict.__annotations__ = {"customer": Customer, "return": dict}
    app.post("/predict")(predict)
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


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BENCH_BODY"), "rb"):read()
"""


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk(port: int, path: str, body: Path, conns: int, seconds: float, tmp: Path) -> dict:
    """Closed-loop load from wrk: ``conns`` keep-alive connections on one thread each (at
    most 2), for ``seconds``; requests/s, p50/p99 latency and non-2xx answers."""
    script = tmp / "post.lua"
    script.write_text(WRK_SCRIPT)
    done = subprocess.run(
        [
            "wrk",
            f"-t{min(conns, 2)}",
            f"-c{conns}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_BODY": str(body)},
        check=True,
    )
    out = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": _seconds(latency["50"]) * 1e3,
        "p99_ms": _seconds(latency["99"]) * 1e3,
        "errors": int(errors.group(1)) if errors else 0,
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
    else:  # the seed: uvicorn with the same number of worker processes
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench_serving:seed_app",
            "--app-dir",
            str(REPO / "bench"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            workers,
            "--log-level",
            "error",
        ]
    env = {**os.environ, **env, "WORKERS": workers, "THREADS": THREADS}
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its workers stop with it
    )


def until_ok(port: int, path: str, body: bytes, timeout: float = 60) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("POST", path, body, {"Content-Type": "application/json"})
            if c.getresponse().status == 200:
                return time.perf_counter() - t0
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"port {port} never answered 200")


def stop(proc: subprocess.Popen) -> None:
    import signal

    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="per HTTP load run")
    ap.add_argument("--repeats", type=int, default=5, help="cold starts per server")
    ap.add_argument(
        "--s3", action="store_true", help="copy the model into a moto S3 server and serve it"
    )
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: `make bench-tools` installs it (Debian package wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    store_uri = os.environ.get("SEGMENTATION_MODEL_STORE", "")
    from segmentation.store import open_store

    if not store_uri or open_store(store_uri).read_pointer()[0] is None:
        from fixtures.bundles import ModelSpec, publish

        from segmentation.store import LocalStore

        store_uri = str(tmp / "store")
        publish(LocalStore(store_uri), ModelSpec())
        print(f"model: test bundle (no current model in SEGMENTATION_MODEL_STORE) {store_uri}")
    with contextlib.ExitStack() as stack:
        if args.s3:
            store_uri = stack.enter_context(_in_moto_s3(store_uri, tmp))
        return _run(args, tmp, store_uri)


@contextlib.contextmanager
def _in_moto_s3(store_uri: str, tmp: Path):
    """Every object of the store copied into a bucket of a moto S3 server; the server's
    address in this process's environment (the servers started later inherit it)."""
    import boto3
    from fixtures.object_servers import moto_s3_server

    from segmentation.store import open_store

    with moto_s3_server(tmp) as server:
        os.environ.update(
            AWS_ENDPOINT_URL=server.url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",
        )
        boto3.client("s3").create_bucket(Bucket="models")
        source, target = open_store(store_uri), open_store("s3://models/segmentation")
        for key in source.list(""):
            target.write_new(key, source.read(key))
        print(f"model: copied into moto S3 at {server.url} (s3://models/segmentation)")
        yield "s3://models/segmentation"


def _run(args, tmp: Path, store_uri: str) -> int:
    customers = load_customers(8950)
    all_cols = {c: np.array([np.nan if r[c] is None else r[c] for r in customers]) for c in COLUMNS}
    X = seed_features(all_cols)
    fitted = seed_pipeline().fit(X)
    npz = tmp / "baseline.npz"
    np.savez(npz, X=X, centers=fitted[-1].cluster_centers_)
    env = {"SEGMENTATION_MODEL_STORE": store_uri, "BENCH_BASELINE": str(npz)}
    os.environ.update(env)
    one = json.dumps(customers[0]).encode()
    body = tmp / "one.json"
    body.write_bytes(one)
    hundred = json.dumps({"customers": customers[:100]}).encode()
    results: dict = {"config": f"{WORKERS} workers; functions-framework threads {THREADS}"}

    # In-process: the shared core handler (what GCF and Lambda call).
    # Request logs go to /dev/null: their formatting cost is measured, not terminal speed.
    import io

    from segmentation import _jsonlog
    from segmentation.api import Request, Service

    with open(os.devnull, "w") as devnull:
        _jsonlog.configure(stream=devnull)
        service = Service.from_env()
        results["graph"] = service.holder.get().graph
        for label, payload, n in (("1", one, 5000), ("100", hundred, 500)):

            def core(b: bytes = payload) -> None:
                service.predict(
                    Request("POST", "/", "application/json", len(b), io.BytesIO(b).read)
                )

            for _ in range(n // 10):
                core()
            results[f"inproc_core_{label}"] = timed(core, n)
        logging.getLogger("segmentation").handlers[:] = []

    # HTTP throughput and latency, one server at a time on the same machine.
    for kind, path in (("functions", "/"), ("seed", "/predict")):
        port = free_port()
        proc = start(kind, port, env)
        try:
            until_ok(port, path, one)
            wrk(port, path, body, 8, 1.0, tmp)  # warm every worker and thread
            for conns in (1, 8):
                run = wrk(port, path, body, conns, args.seconds, tmp)
                results[f"http_{kind}_{conns}conn"] = run
        finally:
            stop(proc)

    # Cold start: process start to the first 200, single worker, repeated.
    for kind, path in (("functions", "/"), ("seed", "/predict")):
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
    f1, b1 = results["http_functions_8conn"]["rps"], results["http_seed_8conn"]["rps"]
    p50 = results["inproc_core_1"][0]
    print(f"in-process p50 1 customer (core): {p50:.0f} us (target <= 60)")
    print(f"HTTP throughput at 8 connections: {f1 / b1:.1f}x the seed (target >= 12x)")
    cf, cb = results["cold_start_functions_s"], results["cold_start_seed_s"]
    print(f"cold start: {cf:.2f} s vs {cb:.2f} s = {cf / cb:.2f} of the seed (target <= 0.25)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
