"""The local emulator over real HTTP on free loopback ports: contract, OpenAPI fuzzing,
a bounded load test with a promotion mid-run, a cold start without a store, and the
`segmentation serve` command's start and stop."""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import schemathesis
from fixtures import openapi
from fixtures.bundles import ModelSpec, current_manifest, publish
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from segmentation import Settings
from segmentation.serving import RETRY_SECONDS
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


def start_emulator(store_uri: str) -> Emulator:
    # The emulator hands its settings to the functions, the poll interval included.
    settings = Settings(model_store=store_uri, pointer_poll_seconds=0.2)
    return Emulator(settings, free_port(), free_port()).start()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    store = LocalStore(tmp_path_factory.mktemp("emulator") / "store")
    publish(store, ModelSpec())
    running = start_emulator(store.uri)
    running.store = store
    try:
        assert running.warm() == 200
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def served_emulator(served_store):
    """The emulator serving a read-only store: the fixture graph or the real export."""
    running = start_emulator(served_store.uri)
    running.manifest = current_manifest(served_store)
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


def test_predict_metadata_and_health_answer_over_http(served_emulator, customer):
    version = served_emulator.manifest["version"]
    ids = {s["id"] for s in served_emulator.manifest["segments"]}
    status, headers, body = call(served_emulator.predict_url + "/", "POST", customer)
    assert status == 200
    openapi.check("/predict", "post", status, body, headers)
    [result] = json.loads(body)["results"]
    assert json.loads(body)["model_version"] == version and result["segment_id"] in ids
    status, headers, body = call(served_emulator.predict_url + "/predict/model")
    openapi.check("/predict/model", "get", status, body, headers)
    assert {s["id"] for s in json.loads(body)["segments"]} == ids
    status, headers, body = call(served_emulator.health_url + "/")
    assert status == 200 and json.loads(body)["model_version"] == version
    openapi.check("/health", "get", status, body, headers)


def test_the_golden_rows_reproduce_over_http(served_emulator):
    golden = served_emulator.manifest["golden_rows"]
    doc = {"customers": [r["inputs"] for r in golden]}
    status, _, body = call(served_emulator.predict_url + "/", "POST", doc)
    assert status == 200
    results = json.loads(body)["results"]
    assert [r["segment_id"] for r in results] == [r["segment_id"] for r in golden]
    for row, result in zip(golden, results, strict=True):
        assert result["distance"] == pytest.approx(min(row["distances"]), rel=1e-4, abs=1e-5)


@SCHEMA.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzing_the_openapi_document_finds_no_contract_violation(case, served_emulator):
    base = served_emulator.health_url if case.path == "/health" else served_emulator.predict_url
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


def test_a_cold_start_without_a_reachable_store_is_503_fast_then_recovers(tmp_path, customer):
    store_dir = tmp_path / "not-yet-there"
    emulator = start_emulator(str(store_dir))
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
        # predict is its own instance: it asks the store again at most once per
        # RETRY_SECONDS after a failed check, answering 503 + Retry-After meanwhile.
        deadline = time.monotonic() + RETRY_SECONDS + 10
        while (status := call(emulator.predict_url + "/", "POST", customer)[0]) != 200:
            assert status == 503 and time.monotonic() < deadline, status
            time.sleep(0.1)
    finally:
        emulator.stop()


def read_lines(stream) -> tuple[queue.Queue, threading.Thread]:
    """Lines of ``stream`` (then None at its end) from a reader thread: a blocking read
    cannot time out, and the pipe keeps being drained so the server never blocks on it."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return lines, reader


def wait_for_line(lines: queue.Queue, text: str, seconds: float) -> None:
    """Return once a line contains ``text``; fail after ``seconds`` or at the stream's end."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        assert line is not None, f"the process ended before printing {text!r}"
        if text in line:
            return
    pytest.fail(f"no line with {text!r} within {seconds}s")


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "term"])
def test_segmentation_serve_starts_both_functions_and_a_signal_stops_them(
    served_store, stop_signal
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
        env={"SEGMENTATION_MODEL_STORE": served_store.uri, "PATH": "/usr/bin:/bin"},
        start_new_session=True,  # its own process group: a failed test can stop the workers
    )
    lines, reader = read_lines(proc.stdout)
    try:
        wait_for_line(lines, "Ctrl-C", seconds=60)
        assert call(f"http://127.0.0.1:{ports[1]}/")[0] == 200
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        reader.join(timeout=10)  # ends when the last process holding the pipe has exited
        outlived = reader.is_alive()
        if outlived:  # a server outlived the command; its process group still exists
            os.killpg(proc.pid, signal.SIGKILL)
            reader.join(timeout=30)
        proc.stdout.close()
    assert not outlived, "a server started by `segmentation serve` outlived it"
    for port in ports:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0
