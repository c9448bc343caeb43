"""The AWS Lambda adapter with the sample events in functions/events/."""

from __future__ import annotations

import json

import pytest
from fixtures import openapi
from fixtures.bundles import current_manifest
from fixtures.clients import event, lambda_module


@pytest.fixture
def aws(served_store, monkeypatch):
    module = lambda_module(served_store.uri, monkeypatch)
    yield module


@pytest.mark.parametrize(
    ("name", "entry", "status", "path", "method"),
    [
        ("predict_one", "predict", 200, "/predict", "post"),
        ("predict_batch_function_url", "predict", 200, "/predict", "post"),
        ("predict_invalid", "predict", 400, "/predict", "post"),
        ("predict_wrong_method", "predict", 405, "/predict", "post"),
        ("metadata", "predict", 200, "/predict/model", "get"),
        ("health", "health", 200, "/health", "get"),
        ("health", "handler", 200, "/health", "get"),
        ("predict_one", "handler", 200, "/predict", "post"),
    ],
)
def test_sample_events_get_the_documented_responses(aws, name, entry, status, path, method):
    result = getattr(aws, entry)(event(name), None)
    assert result["statusCode"] == status
    assert result["isBase64Encoded"] is False
    openapi.check(path, method, status, result["body"].encode(), result["headers"])


def test_a_batch_event_echoes_ids_in_order_with_the_model_version(aws, served_store):
    manifest = current_manifest(served_store)
    body = json.loads(aws.predict(event("predict_batch_function_url"))["body"])
    assert body["model_version"] == manifest["version"]
    assert [r["customer_id"] for r in body["results"]] == ["C-demo-1", "C-demo-2"]
    names = {s["id"]: s["name"] for s in manifest["segments"]}
    assert all(r["segment_name"] == names[r["segment_id"]] for r in body["results"])


def test_the_invalid_event_names_field_and_rule_not_the_value(aws):
    result = aws.predict(event("predict_invalid"))
    error = json.loads(result["body"])["error"]
    assert (error["field"], error["rule"]) == ("balance", "minimum 0")
    assert "-5" not in result["body"]


def test_a_body_that_is_not_valid_base64_is_a_400(aws):
    bad = {**event("predict_one"), "isBase64Encoded": True, "body": "%%%not-base64"}
    result = aws.predict(bad)
    assert result["statusCode"] == 400
    assert json.loads(result["body"])["error"]["rule"] == "valid JSON"


def test_the_request_id_comes_from_the_event(aws):
    assert aws.health(event("health"))["headers"]["X-Request-Id"] == "req-health"


def test_the_golden_rows_reproduce_through_a_function_url_event(aws, served_store):
    manifest = current_manifest(served_store)
    golden = manifest["golden_rows"]
    body = json.dumps({"customers": [r["inputs"] for r in golden]})
    headers = {**event("predict_batch_function_url")["headers"]}
    headers.pop("content-length")
    request = {
        **event("predict_batch_function_url"),
        "headers": headers,
        "isBase64Encoded": False,
        "body": body,
    }
    result = aws.predict(request)
    assert result["statusCode"] == 200
    results = json.loads(result["body"])["results"]
    assert [r["segment_id"] for r in results] == [r["segment_id"] for r in golden]
    for row, got in zip(golden, results, strict=True):
        assert got["distance"] == pytest.approx(min(row["distances"]), rel=1e-4, abs=1e-5)


def test_the_model_is_loaded_and_verified_in_the_init_phase(served_store, monkeypatch):
    module = lambda_module(served_store.uri, monkeypatch)
    # Before any invocation, and without waiting: Lambda freezes the environment between
    # invocations, so the load cannot be left to a background thread.
    health = module.SERVICE.holder.instance_health()
    assert health.ready and health.version == served_store.read_pointer()[0].version
    result = module.predict(event("predict_one"), None)
    assert result["statusCode"] == 200


def test_the_retrain_function_does_not_load_a_model_in_its_init(served_store, monkeypatch):
    # Lambda sets _HANDLER; the retrain deployable imports the same module and must not
    # spend its init phase (10 s at most) on a model it never serves.
    monkeypatch.setenv("_HANDLER", "aws_lambda.retrain")
    module = lambda_module(served_store.uri, monkeypatch)
    assert module.SERVICE.holder.instance_health().ready is False
