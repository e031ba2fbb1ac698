"""The OpenAPI description of the scoring API (served at `/openapi.json`)."""

from __future__ import annotations

from typing import Any

_VALUE: dict[str, Any] = {
    "description": "A feature value: categorical (string or integer), continuous (number), "
    "multi-valued (array of strings), or null (missing)",
    "oneOf": [
        {"type": "string"},
        {"type": "number"},
        {"type": "array", "items": {"type": "string"}},
        {"type": "null"},
    ],
}
_FEATURES: dict[str, Any] = {"type": "object", "additionalProperties": _VALUE}
_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "the reason, e.g. max_candidates"},
        "message": {"type": "string", "description": "what is wrong, naming the limit or field"},
    },
}


def _answer(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "fmstream scoring", "version": "1"},
    "paths": {
        "/v1/score": {
            "post": {
                "summary": "Click probabilities of candidate impressions",
                "description": "Each candidate's features are merged over the shared context; "
                "scores come back in candidate order, with the snapshot version that made them.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Request"}}
                    },
                },
                "responses": {
                    "200": {
                        "description": "scored",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Scores"}}
                        },
                    },
                    "400": _answer("the body is not JSON"),
                    "401": _answer("the bearer token is missing or wrong (when one is set)"),
                    "413": _answer("over max_body_bytes or max_candidates"),
                    "422": _answer(
                        "wrong shape or value type, a field the schema lacks (when rejected), "
                        "over max_fields or max_value_bytes"
                    ),
                    "503": _answer("no snapshot is loaded yet"),
                },
            }
        }
    },
    "components": {
        "schemas": {
            "Request": {
                "type": "object",
                "required": ["candidates"],
                "additionalProperties": False,
                "properties": {
                    "context": _FEATURES,
                    "candidates": {"type": "array", "minItems": 1, "items": _FEATURES},
                },
            },
            "Scores": {
                "type": "object",
                "required": ["model", "version", "scores"],
                "properties": {
                    "model": {"type": "string"},
                    "version": {"type": "integer"},
                    "scores": {
                        "type": "array",
                        "items": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                },
            },
            "Error": _ERROR,
        }
    },
}
