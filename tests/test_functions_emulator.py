"""The local emulator over real HTTP on free loopback ports: contract, OpenAPI fuzzing,
a bounded load test with a promotion mid-run, a cold start without a store, and the
`segmentation serve` command's start and stop."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import schemathesis
from fixtures import openapi
from fixtures.bundles import ModelSpec, publish
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from segmentation import Settings
from segmentation.store import LocalStore
from training.commands.serve import Emulator

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
V2 = ModelSpec(version="v20260102T000000Z-00000002", names=("A", "B", "C", "D"))
SCHEMA = schemathesis.openapi.from_path(openapi.OPENAPI)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_emulator(store_uri: str, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    monkeypatch.setenv("SEGMENTATION_POINTER_POLL_SECONDS", "0.2")
    return Emulator(Settings(model_store=store_uri), free_port(), free_port()).start()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    store = LocalStore(tmp_path_factory.mktemp("emulator") / "store")
    publish(store, ModelSpec())
    with pytest.MonkeyPatch.context() as mp:
        running = start_emulator(store.uri, mp)
        running.store = store
        try:
            assert running.warm() == 200
            yield running
        finally:
            running.stop()


def call(url: str, method: str = "GET", doc=None, headers=None) -> tuple[int, dict, bytes]:
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    path = "/" + url.removeprefix("http://").partition("/")[2]
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    body = None if doc is None else json.dumps(doc).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})} if body else {}
    conn.request(method, path, body=body, headers=hdrs)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


def test_predict_metadata_and_health_answer_over_http(emulator, customer):
    status, headers, body = call(emulator.predict_url + "/", "POST", customer)
    assert status == 200
    openapi.check("/predict", "post", status, body, headers)
    status, headers, body = call(emulator.predict_url + "/predict/model")
    openapi.check("/predict/model", "get", status, body, headers)
    status, headers, body = call(emulator.health_url + "/")
    assert status == 200
    openapi.check("/health", "get", status, body, headers)


@SCHEMA.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzing_the_openapi_document_finds_no_contract_violation(case, emulator):
    base = emulator.health_url if case.path == "/health" else emulator.predict_url
    # Schema-valid rows the model cannot place (a zero credit limit under a positive
    # balance) are a documented 400, so "valid data must get a 2xx" is not asserted.
    case.call_and_validate(base_url=base, excluded_checks=[positive_data_acceptance])


def test_load_with_a_promotion_mid_run_gives_no_5xx_and_no_gap(emulator, customer):
    batch = {"customers": [customer] * 10}
    total, promote_at = 1200, 300

    def worker(i: int) -> tuple[int, str | None]:
        if i == promote_at:
            publish(emulator.store, V2)
        status, _, body = call(emulator.predict_url + "/", "POST", batch if i % 5 else customer)
        return status, json.loads(body).get("model_version")

    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(worker, range(total)))
    assert time.monotonic() - start < 120
    assert {status for status, _ in outcomes} == {200}
    versions = [v for _, v in outcomes]
    assert versions[0] == ModelSpec().version and V2.version in versions
    deadline = time.monotonic() + 10
    while call(emulator.health_url + "/")[2].find(V2.version.encode()) < 0:
        assert time.monotonic() < deadline, "health never reported the promoted version"
        time.sleep(0.1)


def test_a_cold_start_without_a_reachable_store_is_503_fast_then_recovers(
    tmp_path, monkeypatch, customer
):
    store_dir = tmp_path / "not-yet-there"
    emulator = start_emulator(str(store_dir), monkeypatch)
    try:
        started = time.monotonic()
        status, headers, body = call(emulator.health_url + "/")
        assert status == 503 and time.monotonic() - started < 5
        openapi.check("/health", "get", status, body, headers)
        status, headers, _ = call(emulator.predict_url + "/", "POST", customer)
        assert status == 503 and int(headers["Retry-After"]) > 0
        publish(LocalStore(store_dir), ModelSpec())
        deadline = time.monotonic() + 20
        while call(emulator.health_url + "/")[0] != 200:
            assert time.monotonic() < deadline, "the model was never picked up"
            time.sleep(0.1)
        assert call(emulator.predict_url + "/", "POST", customer)[0] == 200
    finally:
        emulator.stop()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "term"])
def test_segmentation_serve_starts_both_functions_and_a_signal_stops_them(
    shared_model_store, stop_signal
):
    ports = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "training.cli",
            "serve",
            "--predict-port",
            str(ports[0]),
            "--health-port",
            str(ports[1]),
            "--workers",
            "1",
            "--threads",
            "2",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={"SEGMENTATION_MODEL_STORE": shared_model_store.uri, "PATH": "/usr/bin:/bin"},
    )
    try:
        for line in proc.stdout:
            if "Ctrl-C" in line:
                break
        assert call(f"http://127.0.0.1:{ports[1]}/")[0] == 200
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    for port in ports:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0
