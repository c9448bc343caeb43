"""Google Cloud Functions (2nd gen) entry points, served by functions-framework.

Targets: ``predict`` (``POST /`` scores customers, ``GET /model`` describes the served
model) and ``health`` (``GET /``, readiness). The contract is ``openapi.yaml``; all logic
is in :mod:`segmentation.api`, shared with the AWS Lambda adapter (``aws_lambda.py``).

``retrain`` (a CloudEvent target for the Pub/Sub messages Cloud Scheduler publishes) and
``retrain_http`` (``POST /retrain``, a manual run) call ``training.retrain.run_retrain``;
they are deployed from the retrain package, which has the training stack, and import it
only when called, so the serving package never loads it.
The model loads on the first request of each worker process (gunicorn forks workers from
a parent that imported this module, and onnxruntime must not be loaded before the fork);
that request waits for it up to ``SEGMENTATION_MODEL_LOAD_WAIT_SECONDS``. ``predict``
answers ``GET /health`` for its own instance (the startup probe); ``health`` reports
whether the store's current version verifies.
"""

from __future__ import annotations

import flask
import functions_framework

from segmentation import _jsonlog
from segmentation.api import Request, Response, Service

_jsonlog.configure()
SERVICE = Service.from_env()  # once per instance: settings, store, model holder


def _request(request: flask.Request) -> Request:
    return Request(
        method=request.method,
        path=request.path,
        content_type=request.content_type,
        content_length=request.content_length,
        read_body=request.stream.read,
        **({"request_id": rid} if (rid := request.headers.get("Function-Execution-Id")) else {}),
    )


def _response(response: Response) -> flask.Response:
    return flask.Response(response.body, response.status, response.headers)


@functions_framework.http
def predict(request: flask.Request) -> flask.Response:
    """Score 1..N customers (``POST /``) or describe the model (``GET /model``)."""
    return _response(SERVICE.predict(_request(request)))


@functions_framework.http
def health(request: flask.Request) -> flask.Response:
    """200 with the verified model's identity, else 503 with Retry-After."""
    return _response(SERVICE.health(_request(request)))


@functions_framework.cloud_event
def retrain(event) -> None:
    """One scheduled run per Cloud Scheduler time; duplicates and overlaps are no-ops."""
    from training.retrain import run_retrain
    from training.retrain.trigger import from_pubsub

    run_retrain(from_pubsub(event.data))  # an unexpected failure raises: Pub/Sub retries


@functions_framework.http
def retrain_http(request: flask.Request) -> flask.Response:
    """``POST /retrain`` with ``{"force": true}`` and an ``Idempotency-Key`` header."""
    from training.retrain.http import handle

    return _response(handle(_request(request), request.headers.get("Idempotency-Key")))
