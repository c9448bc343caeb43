"""``POST /retrain``: a manual run over HTTP, shaped by the serving core's HTTP contract.

Never public: the infrastructure requires authentication for this function. The body is
``{"force": true}`` (or ``{}``) and the ``Idempotency-Key`` header names the run: a retry
of the same request is a duplicate, not a second run.
"""

from __future__ import annotations

import json

from segmentation.api import JSON, HttpError, Request, Response, error_response
from training.retrain.run import run_retrain
from training.retrain.trigger import from_request

#: Largest request body accepted (``{"force": true}`` is 15 bytes).
MAX_BODY_BYTES = 1_024
#: Status per outcome: a run that left the model as it was is still a success.
STATUS = {"promoted": 200, "rejected": 200, "no_retrain": 200, "duplicate": 200, "busy": 409}


def handle(request: Request, idempotency_key: str | None) -> Response:
    """Run the retrain for an HTTP request and answer with its summary."""
    try:
        if request.method != "POST":
            raise HttpError(405, "method_not_allowed", "use POST", "POST")
        if request.path.rstrip("/") not in ("", "/retrain"):
            raise HttpError(404, "not_found", "no such route")
        summary = run_retrain(from_request(idempotency_key, request.read_body(MAX_BODY_BYTES)))
    except Exception as exc:  # the one error mapping: never a traceback to the client
        return error_response(exc)
    status = STATUS.get(summary.outcome, 500 if summary.outcome == "failed" else 422)
    body = json.dumps(summary.to_dict(), default=str).encode()
    return Response(status, body, {"Content-Type": JSON, "X-Request-Id": request.request_id})
