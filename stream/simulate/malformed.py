"""Garbage records of the kinds a real ad pipeline delivers now and then."""

from __future__ import annotations

import numpy as np
import orjson

MALFORMED_KINDS = (
    "truncated_json",
    "not_utf8",
    "not_object",
    "missing_id",
    "ts_not_int",
    "features_not_object",
    "feature_value_object",
)
# A click has no features, so the feature-level kinds would still be valid clicks.
CLICK_KINDS = MALFORMED_KINDS[:5]


def malformed_record(kind: str, seq: int, ts: int) -> bytes:
    """One record of `kind` that the DESIGN.md codec must reject; never contains a newline."""
    rid = f"bad-{seq}"
    if kind == "truncated_json":
        full = orjson.dumps({"id": rid, "ts": ts, "features": {"user_id": "u1"}})
        return full[: len(full) // 2]
    if kind == "not_utf8":
        return b'{"id": "\xff\xfe", "ts": 1}'
    if kind == "not_object":
        return orjson.dumps([rid, ts])
    if kind == "missing_id":
        return orjson.dumps({"ts": ts, "features": {}})
    if kind == "ts_not_int":
        return orjson.dumps({"id": rid, "ts": str(ts), "features": {}})
    if kind == "features_not_object":
        return orjson.dumps({"id": rid, "ts": ts, "features": ["user_id", "u1"]})
    if kind == "feature_value_object":
        return orjson.dumps({"id": rid, "ts": ts, "features": {"user_id": {"nested": 1}}})
    raise ValueError(f"unknown malformed kind {kind!r}")


def draw_kind(rng: np.random.Generator, click: bool) -> str:
    kinds = CLICK_KINDS if click else MALFORMED_KINDS
    return kinds[int(rng.integers(0, len(kinds)))]
