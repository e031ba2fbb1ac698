"""Stable 64-bit feature ids: xxh64 of (field, value), identical on every machine and process.

Python's `hash()` is salted per process and must never be used here. Ids are
unsigned 64-bit hashes reinterpreted as signed int64, the integer type torch
and numpy index with.
"""

from __future__ import annotations

import numpy as np
import xxhash

_SEP = "\x1f"
MISSING = "\x00missing"
DEFAULT = "\x00default"  # a field's shared row for values not admitted yet
VALUE = "\x00value"


def feature_id(field: str, value: str) -> int:
    """The signed int64 id of one (field, value)."""
    h = xxhash.xxh64_intdigest(f"{field}{_SEP}{value}".encode())
    return h - (1 << 64) if h >= (1 << 63) else h


def feature_ids(field: str, values: list[str]) -> np.ndarray:
    prefix = f"{field}{_SEP}"
    digest = xxhash.xxh64_intdigest
    return np.array([digest((prefix + v).encode()) for v in values], dtype=np.uint64).view(np.int64)
