"""Stable 64-bit feature ids of (field, value), identical on every machine and process.

id = H(field, value): the value's UTF-8 bytes, trailing NUL bytes dropped and
zero-padded to 8-byte words, folded word by word through the splitmix64
finalizer, starting from xxh64(field) mixed with the byte length. Whole columns,
or many fields' columns with a seed per value, hash at once in numpy (ASCII
values are joined into one byte string and split at their lengths); one value
at a time gives the same ids. Python's `hash()` is salted per process and is never
used. Ids are the unsigned hashes reinterpreted as signed int64, the integer
type torch and numpy index with.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import xxhash

MISSING = "\x00missing"
DEFAULT = "\x00default"  # a field's shared row for values not admitted yet
VALUE = "\x00value"

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def finalize64(z: Any) -> Any:
    """The splitmix64 finalizer, a bijective avalanche, of a uint64 or an array of
    them (`model.kernels` compiles it for the scalar loops)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def mix64(z: np.ndarray) -> np.ndarray:
    """`finalize64` over uint64 arrays."""
    return np.asarray(finalize64(z))


@lru_cache(maxsize=4096)
def field_seed(field: str) -> np.uint64:
    return np.uint64(xxhash.xxh64_intdigest(field.encode()))


def _fold(seeds: np.uint64 | np.ndarray, packed: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """seeds: one field seed, or one per value; packed: [n, width] uint8, zero-padded,
    width a multiple of 8; lengths: bytes used."""
    words = packed.view("<u8")
    n_words = (lengths + 7) // 8
    with np.errstate(over="ignore"):
        h = mix64(seeds ^ (lengths.astype(np.uint64) * GOLDEN))
        for j in range(words.shape[1]):
            mixed = mix64(h ^ (words[:, j] + GOLDEN * np.uint64(j + 1)))
            h = np.where(j < n_words, mixed, h)
    return h.view(np.int64)


def feature_ids(field: str, values: Sequence[str]) -> np.ndarray:
    """int64 ids of `values` (strings) in `field`."""
    return hash_strings(field_seed(field), values)


def hash_strings(seeds: np.uint64 | np.ndarray, values: Sequence[str]) -> np.ndarray:
    """int64 ids of `values` (strings) under their fields' seeds (`field_seed`): one for
    all, or one per value, so many fields hash in one pass. TypeError when a value is
    not a string."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    joined = "".join(values)
    if not joined.isascii() or "\x00" in joined:
        return _hash_utf8(seeds, values)
    # ASCII: one byte per character, so the joined bytes split at the values' lengths.
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
    data = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    longest = int(lengths.max())
    width = max(8, -(-longest // 8) * 8)
    packed = np.zeros((n, width), dtype=np.uint8)
    if len(data) == n * longest:  # all one length: a reshape
        packed[:, :longest] = data.reshape(n, longest)
    else:
        starts = np.cumsum(lengths) - lengths
        column = np.arange(longest)
        used = column < lengths[:, None]
        packed[:, :longest][used] = data[(starts[:, None] + column)[used]]
    return _fold(seeds, packed, lengths)


def _hash_utf8(seeds: np.uint64 | np.ndarray, values: Sequence[str]) -> np.ndarray:
    """Any text: each value's UTF-8 bytes with trailing NUL bytes dropped."""
    encoded = [v.encode("utf-8").rstrip(b"\x00") for v in values]
    lengths = np.array([len(b) for b in encoded], dtype=np.int64)
    width = max(8, int(-(-lengths.max() // 8) * 8))
    packed = np.zeros((len(encoded), width), dtype=np.uint8)
    for i, b in enumerate(encoded):
        packed[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
    return _fold(seeds, packed, lengths)


def feature_id(field: str, value: str) -> int:
    """The signed int64 id of one (field, value)."""
    return int(feature_ids(field, [value])[0])
