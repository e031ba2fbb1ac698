"""A score request's body, checked against the limits and the snapshot's schema.

Every way a body can be wrong answers a status and a message naming what is
wrong (the limit, the field, the candidate); nothing in a body can raise
anything else, and nothing is kept from one request to the next.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson


class RequestError(Exception):
    """A request answered with `status` and `message`; `reason` labels the metric."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1 << 20
    max_candidates: int = 1_000
    max_fields: int = 200
    max_value_bytes: int = 1_024
    reject_unknown: bool = True


_TOP = frozenset({"context", "candidates"})


def parse(body: bytes, limits: Limits, fields: frozenset[str]) -> list[dict[str, Any]]:
    """The candidates' features, each merged over the shared context."""
    if len(body) > limits.max_body_bytes:
        raise too_large(len(body), limits.max_body_bytes)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, "malformed_json", f"the body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RequestError(
            422, "not_object", "the body must be an object with context and candidates"
        )
    extra = sorted(set(doc) - _TOP)
    if extra:
        raise RequestError(422, "unknown_key", f"unknown key(s) {extra}: expected {sorted(_TOP)}")
    context = doc.get("context", {})
    candidates = doc.get("candidates")
    if not isinstance(context, dict):
        raise RequestError(422, "bad_context", "context must be an object of field: value")
    if not isinstance(candidates, list) or not candidates:
        raise RequestError(422, "bad_candidates", "candidates must be a non-empty array of objects")
    if len(candidates) > limits.max_candidates:
        raise RequestError(
            413,
            "max_candidates",
            f"{len(candidates)} candidates is over the limit "
            f"max_candidates={limits.max_candidates}",
        )
    context = _checked(context, "context", limits, fields)
    merged = []
    for i, candidate in enumerate(candidates):
        if not isinstance(candidate, dict):
            raise RequestError(422, "bad_candidates", f"candidates[{i}] is not an object")
        features = {**context, **_checked(candidate, f"candidates[{i}]", limits, fields)}
        if len(features) > limits.max_fields:
            raise RequestError(
                422,
                "max_fields",
                f"candidates[{i}] has {len(features)} fields with the context, over the limit "
                f"max_fields={limits.max_fields}",
            )
        merged.append(features)
    return merged


def too_large(size: int, limit: int) -> RequestError:
    return RequestError(
        413, "max_body_bytes", f"the body of {size} bytes is over the limit max_body_bytes={limit}"
    )


def _checked(
    features: Mapping[str, Any], where: str, limits: Limits, fields: frozenset[str]
) -> dict[str, Any]:
    """`features` with only values a field can hold, within the value limit; fields the
    schema lacks rejected or dropped."""
    if len(features) > limits.max_fields:
        raise RequestError(
            422,
            "max_fields",
            f"{where} has {len(features)} fields, over the limit max_fields={limits.max_fields}",
        )
    out = dict(features)
    unknown = out.keys() - fields
    if unknown:
        if limits.reject_unknown:
            raise RequestError(
                422,
                "unknown_field",
                f"{where} has field(s) {sorted(unknown)[:5]} the model's schema lacks "
                f"(it has {sorted(fields)[:40]})",
            )
        for name in unknown:
            del out[name]
    limit = limits.max_value_bytes
    short = limit // 4  # a string this short is within the limit in any encoding
    for name, value in out.items():
        kind = type(value)
        if kind is str:
            if len(value) > short and len(value.encode()) > limit:
                raise _too_long(name, where, limit)
        elif kind is not int and kind is not float and value is not None:
            _check_value(name, value, where, limit)
    return out


def _check_value(name: str, value: Any, where: str, limit: int) -> None:
    """A value other than a plain string, integer, float or null."""
    if isinstance(value, str):
        if len(value.encode()) > limit:
            raise _too_long(name, where, limit)
    elif isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise RequestError(
                422, "bad_value", f"{where}.{name}: a list value must hold strings only"
            )
        if sum(len(v.encode()) + 1 for v in value) > limit:  # + 1: an id even when empty
            raise _too_long(name, where, limit)
    elif isinstance(value, bool) or not isinstance(value, int | float | None):
        raise RequestError(
            422,
            "bad_value",
            f"{where}.{name}: {type(value).__name__} is not a feature value "
            "(string, number, null or list of strings)",
        )


def _too_long(name: str, where: str, limit: int) -> RequestError:
    return RequestError(
        422, "max_value_bytes", f"{where}.{name} is longer than the limit max_value_bytes={limit}"
    )
