"""Checkpoints in the join changelog: a task's whole state, so that recovery reads
the newest checkpoint and the entries after it instead of the partition's history.

A checkpoint is written after a committed batch as consecutive records of the
task's changelog partition: chunks of the state's rows (at most `CHUNK_BYTES`
each, so no record nears a broker's size limit), then a mark holding the
progress and pointing back at the first chunk. It counts only once the mark has
landed: an interrupted checkpoint is a run of chunks that recovery applies (its
rows equal the state of that moment) and then overwrites with the entries after
it. Every changelog record carries `base`, the offset of the newest complete
checkpoint when it was written, so the partition's last record says where a
recovery without local state starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from stream.errors import RecordError
from stream.events import dumps
from stream.join.core import Change
from stream.join.records import Entry, Progress, changes_from, changes_json

CHUNK_BYTES = 512 * 1024
_CHUNK, _MARK = "checkpoint_chunk", "checkpoint"


@dataclass(frozen=True)
class Chunk:
    """A part of a checkpoint: state rows (puts) of one partition."""

    partition: int
    changes: list[Change]
    base: int  # the newest complete checkpoint before this one


@dataclass(frozen=True)
class Mark:
    """A checkpoint's end: the progress it reflects (`progress.base` is its first
    chunk's offset) and how many chunks it has."""

    partition: int
    progress: Progress
    chunks: int

    def encode(self) -> bytes:
        return dumps(
            {
                "v": 1,
                "kind": _MARK,
                "p": self.partition,
                "progress": self.progress.to_json(),
                "chunks": self.chunks,
            }
        )


ChangelogRecord = Entry | Chunk | Mark


@dataclass(frozen=True)
class ChangelogTail:
    """A changelog partition's extent and the checkpoint its last record names."""

    first: int  # the oldest offset retention has left
    end: int
    base: int  # -1: no complete checkpoint (or an empty log)


def base_of(record: ChangelogRecord) -> int:
    """The newest complete checkpoint as of `record` (-1: none)."""
    return record.base if isinstance(record, Chunk) else record.progress.base


def decode_changelog(raw: bytes, where: str) -> ChangelogRecord:
    """An entry, a checkpoint chunk or a checkpoint mark; `where` names the record."""
    try:
        obj = orjson.loads(raw)
        kind = obj.get("kind")
        if kind is None:
            return Entry.from_json(obj)
        if kind == _CHUNK:
            return Chunk(int(obj["p"]), changes_from(obj["changes"]), int(obj["base"]))
        if kind == _MARK:
            progress = Progress.from_json(obj["progress"])
            return Mark(int(obj["p"]), progress, int(obj["chunks"]))
        raise ValueError(f"unknown kind {kind!r}")
    except Exception as exc:  # whatever is wrong with it, the record cannot be trusted
        raise _bad(where, exc) from exc


def chunks(partition: int, rows: list[Change], base: int) -> list[bytes]:
    """`rows` cut into encoded chunks of at most about `CHUNK_BYTES` each."""
    out: list[bytes] = []
    part: list[orjson.Fragment] = []
    size = 0
    for row in changes_json(rows):
        encoded = dumps(row)  # once: the chunk embeds these bytes as they are
        if part and size + len(encoded) > CHUNK_BYTES:
            out.append(_chunk(partition, part, base))
            part, size = [], 0
        part.append(orjson.Fragment(encoded))
        size += len(encoded) + 1
    if part or not out:
        out.append(_chunk(partition, part, base))
    return out


def _chunk(partition: int, rows: list[orjson.Fragment], base: int) -> bytes:
    obj: dict[str, Any] = {"v": 1, "kind": _CHUNK, "p": partition, "base": base}
    return dumps({**obj, "changes": rows})


def _bad(where: str, exc: Exception) -> RecordError:
    return RecordError("bad_changelog", f"unreadable changelog record at {where}: {exc}")
