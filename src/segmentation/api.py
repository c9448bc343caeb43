"""The HTTP contract shared by every adapter (GCF functions-framework, AWS Lambda).

Adapters turn their platform's request into a :class:`Request`, call one :class:`Service`
method and turn the :class:`Response` back. Everything else lives here: routing, the body
limit, content type, validation, scoring, response shaping, the one error-to-status
mapping and the request log. The contract is ``functions/openapi.yaml``.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from segmentation.config import Settings
from segmentation.errors import InvalidInput, ModelNotReady, ModelUnverified
from segmentation.schema import FIELDS
from segmentation.scoring import UnscorableRow, assign
from segmentation.serving import RETRY_AFTER_SECONDS, Health, ModelHolder
from segmentation.validation import parse_request

log = logging.getLogger("segmentation.requests")

JSON = "application/json"
METADATA_PATH = "/model"
#: predict's own readiness (this instance's model), the templates' startup probe.
INSTANCE_HEALTH_PATH = "/health"


class HttpError(Exception):
    """A request-level failure with its own status (method, path, media type, size)."""

    def __init__(self, status: int, code: str, message: str, rule: str | None = None):
        super().__init__(message)
        self.status, self.code, self.rule = status, code, rule


_ids = itertools.count()
_PREFIX = [os.urandom(6).hex()]
os.register_at_fork(after_in_child=lambda: _PREFIX.__setitem__(0, os.urandom(6).hex()))


def new_request_id() -> str:
    """Unique per request: a random per-process prefix and a counter (no uuid4 cost)."""
    return f"{_PREFIX[0]}-{next(_ids):x}"


@dataclass(slots=True)
class Request:
    """What the core needs from any platform's request."""

    method: str
    path: str
    content_type: str | None
    content_length: int | None
    read_body: Callable[[int], bytes]  # read at most n bytes
    request_id: str = field(default_factory=new_request_id)


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str]
    error_code: str | None = None  # for the request log only


def _dumps(doc: object) -> bytes:
    # orjson: compact UTF-8 bytes, several times faster than json for a response body.
    return orjson.dumps(doc)


def error_response(exc: Exception) -> Response:
    """The one mapping from an exception to a status and the documented error body."""
    field_, rule, row, headers = None, None, None, {}
    if isinstance(exc, InvalidInput):
        status, code, message = 400, "invalid_input", str(exc)
        field_, rule, row = exc.field, exc.rule, exc.row
    elif isinstance(exc, HttpError):
        status, code, message, rule = exc.status, exc.code, str(exc), exc.rule
        if status == 405:
            headers["Allow"] = rule or ""
    elif isinstance(exc, ModelNotReady):
        status, code, message = 503, exc.code, str(exc)
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    else:  # a bug: no traceback or message leaves the process
        status, code, message = 500, "internal", "internal error"
    body = {"code": code, "message": message, "field": field_, "rule": rule, "row": row}
    return Response(status, _dumps({"error": body}), {"Content-Type": JSON, **headers}, code)


class Service:
    """Predict, metadata and health over one :class:`~segmentation.serving.ModelHolder`."""

    def __init__(self, settings: Settings, holder: ModelHolder | None = None):
        self.settings = settings
        self.holder = holder or ModelHolder.for_uri(
            settings.model_store,
            settings.pointer_poll_seconds,
            load_wait=settings.model_load_wait_seconds,
        )

    @classmethod
    def from_env(cls) -> Service:
        return cls(Settings.from_env())

    def predict(self, request: Request) -> Response:
        """``POST /`` scores customers; ``GET /model`` describes the served model;
        ``GET /health`` is this instance's readiness (its loaded model), without waiting.

        A leading ``/predict`` is ignored, so the paths are also those of a gateway that
        routes by function name (the OpenAPI document's ``/predict``, ``/predict/model``).
        """
        path = _route(request.path, "/predict")
        if path == METADATA_PATH:
            return self._handle("metadata", request, "GET", self._metadata)
        if path == INSTANCE_HEALTH_PATH:
            return self._handle("readiness", request, "GET", self._readiness)
        if path != "/":
            return self._handle("predict", request, None, None)
        return self._handle("predict", request, "POST", self._predict)

    def health(self, request: Request) -> Response:
        """``GET /`` (or ``/health``): model availability. 200 when the store's current
        version is verified and loaded, else 503 (``model_unverified`` when it fails
        verification, ``model_not_ready`` while none is loaded)."""
        if _route(request.path, "/health") != "/":
            return self._handle("health", request, None, None)
        return self._handle("health", request, "GET", self._health)

    def _handle(self, name, request, method, action) -> Response:
        start = time.perf_counter()
        info: dict = {"rows": 0, "model_version": None}
        try:
            if action is None:
                raise HttpError(404, "not_found", "no such route")
            allowed = (method, "HEAD") if method == "GET" else (method,)
            if request.method not in allowed:
                raise HttpError(405, "method_not_allowed", f"use {method}", ",".join(allowed))
            response = action(request, info)
        except Exception as exc:
            response = error_response(exc)
            info["error"] = {"code": response.error_code}
            if isinstance(exc, InvalidInput):
                info["error"].update(field=exc.field, rule=exc.rule, row=exc.row)
            elif response.status == 500:
                log.error("unhandled", extra={"json": {"exception": type(exc).__name__}})
        response.headers["X-Request-Id"] = request.request_id
        info.update(
            function=name,
            request_id=request.request_id,
            status=response.status,
            latency_ms=round((time.perf_counter() - start) * 1000, 3),
        )
        log.info("request", extra={"json": info})
        return response

    def _body(self, request: Request) -> bytes:
        media = (request.content_type or "").split(";")[0].strip().lower()
        if media != JSON:
            raise HttpError(415, "unsupported_media_type", "expected application/json", JSON)
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise HttpError(413, "payload_too_large", "body too large", f"maximum {limit} bytes")
        body = request.read_body(limit + 1)
        if len(body) > limit:
            raise HttpError(413, "payload_too_large", "body too large", f"maximum {limit} bytes")
        return body

    def _predict(self, request: Request, info: dict) -> Response:
        parsed = parse_request(self._body(request), self.settings.max_batch_rows)
        info["rows"] = parsed.rows
        bundle = self.holder.get()  # taken once: this request finishes on this model
        info["model_version"] = bundle.version
        scores = bundle.scorer.score(parsed.columns)
        try:
            assigned = assign(scores, bundle.segment_columns, bundle.manifest.atypical_distance)
        except UnscorableRow as exc:
            # Valid fields whose combination the model cannot place (e.g. a zero credit
            # limit under a positive balance, if the feature SQL does not guard it).
            row = exc.row if parsed.is_batch else None
            raise InvalidInput("(row)", "combination of values the model can score", row) from None
        names = bundle.segment_names
        rows = [
            {
                "customer_id": cid,
                "segment_id": sid,
                "segment_name": names[sid],
                "distance": round(dist, 6),
                "confidence": round(conf, 6),
                "atypical": aty,
            }
            for cid, (sid, dist, conf, aty) in zip(parsed.ids, assigned, strict=True)
        ]
        return Response(
            200, _dumps({"model_version": bundle.version, "results": rows}), {"Content-Type": JSON}
        )

    def _metadata(self, request: Request, info: dict) -> Response:
        bundle = self.holder.get()
        info["model_version"] = bundle.version
        m = bundle.manifest
        doc = {
            "model_version": m.version,
            "trained_at": m.created_at,
            "segments": [
                {
                    "id": s.id,
                    "name": s.name,
                    "description": s.description,
                    "share": s.share,
                    "top_features": list(s.top_features),
                }
                for s in m.segments
            ],
            "features": list(m.feature_names),
            "atypical_distance": m.atypical_distance,
            "inputs": [f.to_dict() for f in FIELDS],
            "limits": {
                "max_batch_rows": self.settings.max_batch_rows,
                "max_body_bytes": self.settings.max_body_bytes,
            },
        }
        return Response(200, _dumps(doc), {"Content-Type": JSON, "Cache-Control": "no-store"})

    def _readiness(self, request: Request, info: dict) -> Response:
        health = self.holder.instance_health()
        if not health.ready:
            raise ModelNotReady("no verified model is loaded on this instance")
        info["model_version"] = health.version
        return _health_response("instance", health)

    def _health(self, request: Request, info: dict) -> Response:
        health = self.holder.store_health()
        info["model_version"] = health.version
        # The cause (store paths, verification failures) goes to the logs, not clients.
        if health.store_version_refused:
            raise ModelUnverified("the store's current version fails verification")
        if not health.serves_store_version:
            raise ModelNotReady("the store's current version is not verified and loaded")
        return _health_response("store", health)


def _health_response(scope: str, health: Health) -> Response:
    doc = {
        "status": "ok",
        "scope": scope,
        "model_version": health.version,
        "model_sha256": health.model_sha256,
        "manifest_sha256": health.manifest_sha256,
        "graph": health.graph,
        "loaded_at": _iso(health.loaded_at),
        "store_version": health.store_version,
        "checked_at": _iso(health.checked_at),
        "uptime_seconds": round(health.uptime_seconds, 3),
    }
    return Response(200, _dumps(doc), {"Content-Type": JSON, "Cache-Control": "no-store"})


def _route(path: str, prefix: str) -> str:
    if path == prefix or path.startswith(prefix + "/"):
        path = path[len(prefix) :]
    return path.rstrip("/") or "/"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
