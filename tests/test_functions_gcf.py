"""The GCF entry points in-process (functions-framework test client), checked against the
OpenAPI document: predict, metadata, health, the error contract and 503 without a model."""

from __future__ import annotations

import hashlib
import io
import json
import logging

import pytest
from fixtures import openapi
from fixtures.bundles import ModelSpec, current_manifest, publish
from fixtures.clients import gcf_client

from segmentation._jsonlog import JsonFormatter

SECRET = 123456.789


@pytest.fixture
def predict(served_store, monkeypatch):
    client, _ = gcf_client("predict", served_store.uri, monkeypatch)
    yield client


@pytest.fixture
def manifest(served_store) -> dict:
    return current_manifest(served_store)


@pytest.fixture
def empty_predict(store, monkeypatch):
    client, _ = gcf_client("predict", store.uri, monkeypatch, load_wait=0.2)
    yield client


def test_one_customer_gets_a_segment_a_confidence_and_the_model_version(
    predict, manifest, customer
):
    response = predict.post("/", json=customer)
    assert response.status_code == 200
    openapi.check("/predict", "post", 200, response.data, response.headers)
    body = response.get_json()
    assert body["model_version"] == manifest["version"]
    [result] = body["results"]
    assert result["customer_id"] == "C-test-1"
    names = {s["id"]: s["name"] for s in manifest["segments"]}
    assert result["segment_name"] == names[result["segment_id"]]
    assert 0 <= result["confidence"] <= 1 and result["distance"] >= 0
    assert response.headers["X-Request-Id"]


def test_a_batch_of_real_customers_gets_one_result_per_customer_in_order(
    predict, manifest, real_customers
):
    response = predict.post("/predict", json={"customers": real_customers})
    assert response.status_code == 200
    openapi.check("/predict", "post", 200, response.data, response.headers)
    results = response.get_json()["results"]
    assert [r["customer_id"] for r in results] == [c["customer_id"] for c in real_customers]
    assert len({r["segment_id"] for r in results}) > 1
    assert {r["segment_id"] for r in results} <= {s["id"] for s in manifest["segments"]}


def test_the_golden_rows_reproduce_through_the_http_api(predict, manifest):
    """Each golden row gets its recorded segment, the distance to it and the confidence
    1 - d1/d2, all computed here from the manifest's recorded distances."""
    golden = manifest["golden_rows"]
    customers = [{**r["inputs"], "customer_id": f"golden-{i}"} for i, r in enumerate(golden)]
    response = predict.post("/", json={"customers": customers})
    assert response.status_code == 200
    results = response.get_json()["results"]
    names = {s["id"]: s["name"] for s in manifest["segments"]}
    for row, result in zip(golden, results, strict=True):
        nearest, second = sorted(row["distances"])[:2]
        assert (result["segment_id"], result["segment_name"]) == (
            row["segment_id"],
            names[row["segment_id"]],
        )
        assert result["distance"] == pytest.approx(nearest, rel=1e-4, abs=1e-5)
        assert result["confidence"] == pytest.approx(1 - nearest / second, abs=1e-4)
        assert result["atypical"] is (nearest > manifest["atypical_distance"])


def test_the_metadata_route_describes_the_served_model(predict, manifest):
    response = predict.get("/model")
    assert response.status_code == 200
    openapi.check("/predict/model", "get", 200, response.data, response.headers)
    body = response.get_json()
    assert body["model_version"] == manifest["version"]
    assert [s["id"] for s in body["segments"]] == [s["id"] for s in manifest["segments"]]
    assert body["features"] == [f["name"] for f in manifest["features"]]
    assert len(body["inputs"]) == 17 and body["limits"]["max_batch_rows"] == 1000


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code", "field", "rule"),
    [
        (
            "post",
            "/",
            {"data": "{", "content_type": "application/json"},
            400,
            "invalid_input",
            "body",
            "valid JSON",
        ),
        (
            "post",
            "/",
            {"json": {"balance": SECRET}},
            400,
            "invalid_input",
            "balance_frequency",
            "required",
        ),
        (
            "post",
            "/",
            {"data": "{}", "content_type": "text/plain"},
            415,
            "unsupported_media_type",
            None,
            "application/json",
        ),
        ("post", "/", {"data": "{}"}, 415, "unsupported_media_type", None, "application/json"),
        ("get", "/", {}, 405, "method_not_allowed", None, "POST"),
        ("put", "/", {"json": {}}, 405, "method_not_allowed", None, "POST"),
        ("post", "/model", {"json": {}}, 405, "method_not_allowed", None, "GET,HEAD"),
        ("post", "/elsewhere", {"json": {}}, 404, "not_found", None, None),
    ],
)
def test_bad_requests_get_the_documented_error(
    predict, method, path, kwargs, status, code, field, rule
):
    response = getattr(predict, method)(path, **kwargs)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert (error["code"], error["field"], error["rule"]) == (code, field, rule)
    assert str(SECRET) not in response.get_data(as_text=True)
    if path in ("/", "/model") and status != 404:
        openapi.check(
            "/predict" + path.rstrip("/"),
            "get" if path == "/model" else "post",
            status,
            response.data,
            response.headers,
        )


def test_an_oversize_body_is_refused_before_it_is_parsed(shared_model_store, monkeypatch):
    client, _ = gcf_client(
        "predict", shared_model_store.uri, monkeypatch, SEGMENTATION_MAX_BODY_BYTES=1000
    )
    response = client.post("/", data=b"{" + b" " * 2000 + b"}", content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["rule"] == "maximum 1000 bytes"


def test_without_a_model_predict_answers_503_with_retry_after(empty_predict, customer):
    response = empty_predict.post("/", json=customer)
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    openapi.check("/predict", "post", 503, response.data, response.headers)


def test_health_reports_the_verified_model(served_store, monkeypatch):
    client, _ = gcf_client("health", served_store.uri, monkeypatch)
    response = client.get("/")
    assert response.status_code == 200
    openapi.check("/health", "get", 200, response.data, response.headers)
    body = response.get_json()
    pointer, _ = served_store.read_pointer()
    folder = served_store.root / "versions" / pointer.version
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert body["model_version"] == body["store_version"] == pointer.version
    assert body["manifest_sha256"] == pointer.manifest_sha256 == digest["manifest.json"]
    assert body["model_sha256"] == digest["model.onnx"]
    assert body["scope"] == "store"
    # The trained bundle ships the scoring graph; the hand-built fixture has model.onnx only.
    assert body["graph"] == ("scoring.onnx" if "scoring.onnx" in digest else "model.onnx")


def test_predict_answers_its_own_readiness_at_once(served_store, store, monkeypatch):
    client, _ = gcf_client("predict", store.uri, monkeypatch, load_wait=5.0)
    response = client.get("/health")  # a cold instance: the probe starts the load
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    openapi.check("/predict/health", "get", 503, response.data, response.headers)
    client, _ = gcf_client("predict", served_store.uri, monkeypatch)
    assert client.get("/model").status_code == 200  # a request waits for the first load
    response = client.get("/predict/health")
    assert response.status_code == 200
    openapi.check("/predict/health", "get", 200, response.data, response.headers)
    body = response.get_json()
    assert body["scope"] == "instance"
    assert body["model_version"] == served_store.read_pointer()[0].version


def test_health_says_when_the_stores_current_version_fails_verification(
    model_store, monkeypatch, customer
):
    client, _ = gcf_client(
        "health", model_store.uri, monkeypatch, SEGMENTATION_POINTER_POLL_SECONDS=0
    )
    predict, _ = gcf_client(
        "predict", model_store.uri, monkeypatch, SEGMENTATION_POINTER_POLL_SECONDS=0
    )
    assert client.get("/").status_code == 200
    assert predict.post("/", json=customer).status_code == 200
    bad = ModelSpec(version="v20260102T000000Z-00000002")
    publish(model_store, bad, stored_model=b"\x08\x07")
    response = client.get("/")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "model_unverified"
    openapi.check("/health", "get", 503, response.data, response.headers)
    # Instances keep serving the verified version meanwhile.
    answer = predict.post("/", json=customer)
    assert answer.status_code == 200
    assert answer.get_json()["model_version"] == ModelSpec().version


@pytest.mark.parametrize("setup", ["no pointer", "truncated model", "pickle as model"])
def test_health_is_503_quickly_when_no_verified_model_exists(store, monkeypatch, setup):
    if setup == "truncated model":
        publish(store, ModelSpec(), stored_model=b"\x08\x07")
    elif setup == "pickle as model":
        publish(store, ModelSpec(), stored_model=b"\x80\x04K\x01.")
    client, _ = gcf_client("health", store.uri, monkeypatch, load_wait=0.5)
    response = client.get("/")
    assert response.status_code == 503
    openapi.check("/health", "get", 503, response.data, response.headers)


def test_request_logs_are_json_without_customer_values(predict, customer):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger("segmentation").addHandler(handler)
    try:
        predict.post("/", json={**customer, "balance": SECRET})
        predict.post("/", json={**customer, "balance": -SECRET})
    finally:
        logging.getLogger("segmentation").removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    requests = [line for line in lines if line.get("message") == "request"]
    assert [r["status"] for r in requests] == [200, 400]
    assert {"request_id", "rows", "model_version", "latency_ms"} <= set(requests[0])
    text = json.dumps(lines)
    assert str(SECRET) not in text and "C-test-1" not in text
