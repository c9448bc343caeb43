"""The component schemas of ``functions/openapi.yaml``: the customer (from
``segmentation.schema``), the batch, the responses and the error contract."""

from __future__ import annotations

from segmentation.config import Settings
from segmentation.schema import FIELDS, ID_NAME
from segmentation.validation import BATCH_KEY, MAX_ID_LENGTH

ERROR_CODES = [
    "invalid_input",
    "payload_too_large",
    "unsupported_media_type",
    "method_not_allowed",
    "not_found",
    "model_not_ready",
    "model_unverified",
    "internal",
]


def customer_schema() -> dict:
    """JSON Schema of one customer, from the input contract."""
    props: dict = {
        ID_NAME: {
            "type": ["string", "null"],
            "minLength": 1,
            "maxLength": MAX_ID_LENGTH,
            "description": "Optional customer id, echoed in the result; never logged.",
        }
    }
    for f in FIELDS:
        kind = "integer" if f.kind == "integer" else "number"
        props[f.name] = {
            "type": [kind, "null"] if f.nullable else kind,
            "minimum": f.minimum,
            "maximum": f.maximum,
            "description": f.description + (" Null or omitted when unknown." if f.nullable else ""),
        }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [f.name for f in FIELDS if not f.nullable],
        "properties": props,
    }


def ref(name: str) -> dict:
    """A JSON reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def component_schemas(s: Settings) -> dict:
    """Every component schema, with the limits of ``s``."""
    nullable_str = {"type": ["string", "null"]}
    schemas = {
        "Customer": customer_schema(),
        "Batch": {
            "type": "object",
            "additionalProperties": False,
            "required": [BATCH_KEY],
            "properties": {
                BATCH_KEY: {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": s.max_batch_rows,
                    "items": ref("Customer"),
                }
            },
        },
        "Result": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "customer_id",
                "segment_id",
                "segment_name",
                "distance",
                "confidence",
                "atypical",
            ],
            "properties": {
                "customer_id": {**nullable_str, "description": "Echo of the request's id."},
                "segment_id": {"type": "integer", "description": "Stable segment id."},
                "segment_name": {"type": "string"},
                "distance": {
                    "type": "number",
                    "minimum": 0,
                    "description": "Distance to the assigned segment's centre.",
                },
                "confidence": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "description": "1 - d1/d2 (nearest over second-nearest "
                    "distance): 0 on a boundary, 1 on the centre.",
                },
                "atypical": {
                    "type": "boolean",
                    "description": "d1 above the model's "
                    "atypical_distance: far from every segment.",
                },
            },
        },
        "PredictResponse": {
            "type": "object",
            "additionalProperties": False,
            "required": ["model_version", "results"],
            "properties": {
                "model_version": {"type": "string"},
                "results": {
                    "type": "array",
                    "items": ref("Result"),
                    "description": "One result per customer, in request order.",
                },
            },
        },
        "Metadata": {
            "type": "object",
            "required": [
                "model_version",
                "trained_at",
                "segments",
                "features",
                "inputs",
                "atypical_distance",
                "limits",
            ],
            "properties": {
                "model_version": {"type": "string"},
                "trained_at": {"type": "string"},
                "segments": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "name", "description"],
                        "properties": {
                            "id": {"type": "integer"},
                            "name": {"type": "string"},
                            "description": {"type": "string"},
                            "share": {"type": ["number", "null"]},
                            "top_features": {
                                "type": "array",
                                "items": {"type": "string"},
                                "description": "Features that most distinguish the segment.",
                            },
                        },
                    },
                },
                "features": {"type": "array", "items": {"type": "string"}},
                "atypical_distance": {"type": "number"},
                "inputs": {"type": "array", "items": {"type": "object"}},
                "limits": {
                    "type": "object",
                    "properties": {
                        "max_batch_rows": {"type": "integer"},
                        "max_body_bytes": {"type": "integer"},
                    },
                },
            },
        },
        "Health": {
            "type": "object",
            "additionalProperties": False,
            "description": "scope 'instance': predict's own readiness (GET /predict/health), "
            "the model this instance serves. scope 'store': model availability (the health "
            "function), 200 only when the store's current version verifies and is loaded.",
            "required": [
                "status",
                "scope",
                "model_version",
                "model_sha256",
                "manifest_sha256",
                "graph",
                "loaded_at",
                "store_version",
                "checked_at",
                "uptime_seconds",
            ],
            "properties": {
                "status": {"const": "ok"},
                "scope": {"enum": ["instance", "store"]},
                "model_version": {"type": "string"},
                "model_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "manifest_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "graph": {
                    "enum": ["model.onnx", "scoring.onnx"],
                    "description": "The bundle file this instance runs.",
                },
                "loaded_at": {"type": "string", "format": "date-time"},
                "store_version": {
                    "type": ["string", "null"],
                    "description": "The version the store's pointer named at the last check.",
                },
                "checked_at": {"type": ["string", "null"], "format": "date-time"},
                "uptime_seconds": {"type": "number", "minimum": 0},
            },
        },
        "Error": {
            "type": "object",
            "additionalProperties": False,
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["code", "message", "field", "rule", "row"],
                    "properties": {
                        "code": {"enum": ERROR_CODES},
                        "message": {
                            "type": "string",
                            "description": "Names field and rule; "
                            "never contains the submitted values.",
                        },
                        "field": {
                            **nullable_str,
                            "description": "Offending field, 'body' for "
                            "the document, '(row)' for a combination of fields.",
                        },
                        "rule": {
                            **nullable_str,
                            "description": "The broken rule, e.g. "
                            "'minimum 0', 'required', 'type number'.",
                        },
                        "row": {
                            "type": ["integer", "null"],
                            "minimum": 0,
                            "description": "Index of the customer in a batch.",
                        },
                    },
                }
            },
        },
    }
    return schemas
