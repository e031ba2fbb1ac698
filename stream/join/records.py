"""The records a join task reads and writes, and the changelog entry of one batch.

A changelog entry is everything one batch changed for one partition: the join
state changes, the input offsets and event times after the batch, the next
output sequence number, and the batch's outputs themselves (the outbox). It is
the commit point: once it is in the changelog the batch happened, and recovery
re-sends whatever part of its outbox did not reach the output topics.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream.errors import RecordError
from stream.events import FORMAT_HEADER, Impression, dumps
from stream.join.core import PENDING, Change

SRC_HEADER = "fmstream.src"  # "<partition>": which join task wrote an output
SEQ_HEADER = "fmstream.seq"  # the task's output sequence number
LABELED, CORRECTIONS, DEAD_LETTER = "labeled", "corrections", "dead_letter"


@dataclass(frozen=True, slots=True)
class InRecord:
    """One consumed record; `topic` is the logical input (impressions or clicks)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a null value (a tombstone), dead-lettered as is
    timestamp: int


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One produced record; `topic` is logical (labeled, corrections, dead_letter)."""

    topic: str
    key: bytes | None
    value: bytes | None
    ts: int
    seq: int
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Progress:
    """Where a partition's task stands: next input offsets, each input's largest event
    time, the next output sequence number, and `marks`: per output partition
    ("topic:partition"), the offset after the task's last confirmed output, from
    which recovery looks for the outputs of an unfinished batch. `base`: the changelog
    offset of the partition's newest complete checkpoint (-1: none yet), where a
    recovery without local state starts reading."""

    offsets: dict[str, int] = field(default_factory=dict)
    times: tuple[int | None, int | None] = (None, None)
    seq: int = 0
    marks: dict[str, int] = field(default_factory=dict)
    base: int = -1

    def to_json(self) -> dict[str, Any]:
        return {
            "offsets": self.offsets,
            "times": list(self.times),
            "seq": self.seq,
            "marks": self.marks,
            "base": self.base,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Progress:
        imp, click = obj["times"]
        offsets, marks = dict(obj["offsets"]), dict(obj["marks"])
        return cls(offsets, (imp, click), int(obj["seq"]), marks, int(obj.get("base", -1)))


@dataclass(frozen=True)
class Entry:
    """One batch of one partition, as written to the changelog."""

    partition: int
    progress: Progress
    changes: list[Change]
    outbox: list[OutRecord]

    def encode(self) -> bytes:
        return dumps(
            {
                "v": 1,
                "p": self.partition,
                "progress": self.progress.to_json(),
                "changes": changes_json(self.changes),
                "out": [_out_json(o) for o in self.outbox],
            }
        )

    @classmethod
    def decode(cls, raw: bytes, where: str) -> Entry:
        try:
            return cls.from_json(orjson.loads(raw))
        except Exception as exc:  # whatever is wrong with it, the entry cannot be trusted
            raise RecordError(
                "bad_changelog", f"unreadable changelog entry at {where}: {exc}"
            ) from exc

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Entry:
        """An entry from its parsed JSON (raises whatever is missing or malformed)."""
        changes = changes_from(obj["changes"])
        outbox = [_out_from(o, int(obj["p"])) for o in obj["out"]]
        return cls(int(obj["p"]), Progress.from_json(obj["progress"]), changes, outbox)


def changes_json(changes: list[Change]) -> list[list[Any]]:
    return [[k, rid, _state_value(k, v)] for k, rid, v in changes]


def changes_from(raw: list[list[Any]]) -> list[Change]:
    return [(k, rid, _state_from(k, v)) for k, rid, v in raw]


def _state_value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == PENDING:
        imp: Impression = value
        if imp.raw is not None:
            return orjson.Fragment(imp.raw)
        return {"id": imp.id, "ts": imp.ts, "features": imp.features}
    return value


def _state_from(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == PENDING:
        return Impression(value["id"], value["ts"], value["features"])
    if isinstance(value, list):
        return tuple(value)
    return value


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def _out_json(o: OutRecord) -> list[Any]:
    if o.topic in _JSON_OUTPUTS and o.value is not None:
        # Our own JSON (an event or an example batch): embedded as is (no base64), its
        # headers rebuilt from the entry, a batch's format named after its sequence.
        key = o.key.decode() if o.key is not None else None
        out = [o.topic, key, orjson.Fragment(o.value), o.ts, o.seq]
        kind = dict(o.headers).get(FORMAT_HEADER)
        return out if kind is None else [*out, kind.decode()]
    return [o.topic, _b64(o.key), _b64(o.value), o.ts, o.seq, [[k, _b64(v)] for k, v in o.headers]]


def _out_from(raw: list[Any], partition: int) -> OutRecord:
    if len(raw) == 5 or isinstance(raw[5], str):
        topic, key, value, ts, seq = raw[:5]
        headers: tuple[tuple[str, bytes], ...] = (
            (SRC_HEADER, str(partition).encode()),
            (SEQ_HEADER, str(seq).encode()),
        )
        if len(raw) == 6:
            headers += ((FORMAT_HEADER, raw[5].encode()),)
        return OutRecord(
            topic, key.encode() if key is not None else None, dumps(value), ts, seq, headers
        )
    topic, key, value, ts, seq, raw_headers = raw
    return OutRecord(
        topic,
        _unb64(key),
        _unb64(value),
        ts,
        seq,
        tuple((k, _unb64(v) or b"") for k, v in raw_headers),
    )


_JSON_OUTPUTS = (LABELED, CORRECTIONS)
