"""AWS Lambda adapter: API Gateway HTTP API (payload 2.0) and Function URL events.

Handlers: ``predict`` and ``health`` (one function each), or ``handler``, which routes
``/health`` to health and every other path to predict (one function behind one URL).
``retrain`` takes EventBridge Scheduler events (the schedule's Input carries its ARN and
scheduled time) and calls ``training.retrain.run_retrain``; it is deployed from the
retrain package and imports the training stack only when called.
Routes and the contract are those of the GCF functions (``openapi.yaml``): ``/`` or
``/predict`` (POST), ``/model`` or ``/predict/model`` (GET), ``/`` or ``/health`` (GET).

The model is loaded and verified in the init phase (module scope): Lambda freezes the
environment between invocations, so no background thread could be relied on, and the
first invocation finds the model ready. Later pointer checks run on request after the
TTL (``segmentation.serving``).
"""

from __future__ import annotations

import base64
import binascii
import os

from segmentation import _jsonlog
from segmentation.api import Request, Response, Service, new_request_id

_jsonlog.configure()
SERVICE = Service.from_env()  # once per cold start
if not os.environ.get("_HANDLER", "").endswith(".retrain"):  # Lambda names the handler
    SERVICE.holder.load()  # init phase: a failure is logged; requests retry the load


def _request(event: dict) -> Request:
    http = event.get("requestContext", {}).get("http", {})
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    path = event.get("rawPath") or http.get("path") or "/"
    body = event.get("body") or ""
    try:
        raw = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else body
    except (binascii.Error, ValueError):
        raw = b"\xff"  # not decodable: the core answers 400 "valid JSON"
    raw = raw.encode() if isinstance(raw, str) else raw
    length = headers.get("content-length")
    return Request(
        method=http.get("method", "GET").upper(),
        path=path or "/",
        content_type=headers.get("content-type"),
        content_length=int(length) if length and length.isdigit() else len(raw),
        read_body=lambda n: raw[:n],
        request_id=event.get("requestContext", {}).get("requestId") or new_request_id(),
    )


def _response(response: Response) -> dict:
    return {
        "statusCode": response.status,
        "headers": response.headers,
        "body": response.body.decode(),
        "isBase64Encoded": False,
    }


def predict(event: dict, context: object = None) -> dict:
    """Score customers (``POST``) or describe the model (``GET /model``)."""
    return _response(SERVICE.predict(_request(event)))


def health(event: dict, context: object = None) -> dict:
    """Readiness: 200 with the verified model's identity, else 503."""
    return _response(SERVICE.health(_request(event)))


def handler(event: dict, context: object = None) -> dict:
    """One function for both: ``/health`` goes to health, anything else to predict."""
    path = event.get("rawPath") or ""
    return health(event, context) if path.startswith("/health") else predict(event, context)


def retrain(event: dict, context: object = None) -> dict:
    """One scheduled run per EventBridge Scheduler time; duplicates are no-ops."""
    from training.retrain import run_retrain
    from training.retrain.trigger import from_eventbridge

    return run_retrain(from_eventbridge(event)).to_dict()
