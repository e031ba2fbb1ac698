"""Hostile input: record values a careless or malicious producer could write, for the
join daemon's and the replay readers' fuzz tests. Seeded, so a failure reproduces."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import orjson

T0 = 1_780_000_000_000
_WEIRD_STRINGS = ["", " ", "\x00", "é", "\u2028", "🙂" * 50, "a" * 5_000, "\\", '"', "\n"]
_EXTREME_NUMBERS: list[object] = [
    0,
    -1,
    2**63,
    2**64,
    10**20,
    -(2**63),
    1e308,
    -1e308,
    5e-324,
    0.5,
    T0 + 0.5,
    True,
    False,
    None,
]


def _nested(rng: random.Random, depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"k": value}
    return value


def _any_value(rng: random.Random) -> object:
    choices: list[Callable[[], object]] = [
        lambda: rng.choice(_WEIRD_STRINGS),
        lambda: rng.choice(_EXTREME_NUMBERS),
        lambda: _nested(rng, rng.randint(1, 40)),
        lambda: [rng.choice(_WEIRD_STRINGS) for _ in range(rng.randint(0, 5))],
        lambda: [1, "a", None],
        lambda: {},
    ]
    return rng.choice(choices)()


def _json_record(rng: random.Random, i: int) -> bytes:
    """A JSON object with some of the right fields, each possibly of the wrong kind."""
    obj: dict[str, object] = {}
    if rng.random() < 0.9:
        # A small pool of ids: clicks meet their impressions, duplicates happen.
        obj["id"] = f"h{rng.randint(0, 300)}" if rng.random() < 0.7 else _any_value(rng)
    if rng.random() < 0.9:
        obj["ts"] = (
            T0 + rng.randint(-3_600_000, 3_600_000) if rng.random() < 0.6 else (_any_value(rng))
        )
    if rng.random() < 0.8:
        if rng.random() < 0.6:
            obj["features"] = {rng.choice(_WEIRD_STRINGS) or "f": _any_value(rng)}
        else:
            obj["features"] = _any_value(rng)
    if rng.random() < 0.2:
        obj[rng.choice(_WEIRD_STRINGS)] = _any_value(rng)
    try:
        return orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):  # too deep, or an int past 64 bits
        return repr(obj).encode()


_RAW: list[Callable[[random.Random, int], bytes | None]] = [
    lambda rng, i: bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))),
    lambda rng, i: None,
    lambda rng, i: b"",
    lambda rng, i: b"[" * 5_000 + b"]" * 5_000,
    lambda rng, i: b'{"id": "h%d", "ts": %s, "features": {}}' % (i, b"9" * 400),
    lambda rng, i: b'{"id": "h%d", "ts": 1e999, "features": {}}' % i,
    lambda rng, i: b'{"id": "\\ud800", "ts": 1780000000000, "features": {}}',
    lambda rng, i: (
        b'{"id": "h%d", "ts": 1780000000000, "features": {"x": "%s"}}'
        % (i, b"y" * rng.choice([100, 70_000, 200_000]))
    ),
    lambda rng, i: b"null",
    lambda rng, i: b'"a string"',
    lambda rng, i: b"\xef\xbb\xbf{}",
    lambda rng, i: b'{"id": "h%d", "ts": 1780000000000, "features": {}' % i,  # cut short
    _json_record,
    _json_record,
    _json_record,
    _json_record,
]


def values(seed: int, n: int) -> Iterator[bytes | None]:
    """n hostile record values (None is a null value, a Kafka tombstone)."""
    rng = random.Random(seed)
    for i in range(n):
        yield rng.choice(_RAW)(rng, i)


def keys_and_headers(seed: int, n: int) -> Iterator[tuple[bytes | None, list[tuple[str, bytes]]]]:
    """Odd record keys and headers to send the values with."""
    rng = random.Random(seed)
    for i in range(n):
        key = rng.choice([None, b"", f"k{i}".encode(), bytes(rng.getrandbits(8) for _ in range(8))])
        headers = rng.choice([[], [("fmstream.error", b"forged")], [("", b"\x00" * 100)]])
        yield key, headers


def lines(seed: int, n: int) -> Iterator[bytes]:
    """n hostile lines for the log readers: the same values, on one line each."""
    for value in values(seed, n):
        yield (value or b"").replace(b"\n", b" ").replace(b"\r", b" ")
