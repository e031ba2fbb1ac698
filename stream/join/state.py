"""Join tasks' state in one local RocksDB directory per joiner instance.

Per partition: pending impressions, clicks waiting for their impression, ids
already labeled, and the task's progress together with the changelog offset
it reflects, all written in one WriteBatch per batch. The changelog topic is
the source of truth; this store is its local materialization, so a restart
reads only the changelog entries it has not applied yet.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import orjson
from rocksdict import AccessType, Options, Rdict, WriteBatch

from stream.errors import JoinStateError
from stream.events import Impression, decode_impression, encode_impression
from stream.join.checkpoint import ChangelogRecord, Chunk, Mark
from stream.join.core import DONE, PENDING, WAITING, Change, JoinerCore
from stream.join.records import Progress

_STATE, _META = b"s", b"m"


def _prefix(partition: int) -> bytes:
    return _STATE + struct.pack(">I", partition)


def _meta_key(partition: int) -> bytes:
    return _META + struct.pack(">I", partition)


class JoinState:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.mkdir(parents=True, exist_ok=True)
            options = Options(raw_mode=True)
            options.create_if_missing(True)
            self._db = Rdict(str(path), options=options, access_type=AccessType.read_write())
        except Exception as exc:
            hint = (
                "another joiner instance uses it: give each instance its own --state-dir"
                if "lock" in str(exc).lower()
                else "check the path and its permissions"
            )
            raise JoinStateError(f"cannot open the join state at {path}: {exc}; {hint}") from exc

    def progress(self, partition: int) -> tuple[Progress, int] | None:
        """The partition's progress and the next changelog offset it has not applied."""
        raw = self._db.get(_meta_key(partition))
        if raw is None:
            return None
        try:
            obj = orjson.loads(raw)
            return Progress.from_json(obj["progress"]), int(obj["changelog_next"])
        except Exception as exc:
            raise self._unreadable(partition, exc) from exc

    def apply(self, records: list[tuple[ChangelogRecord, int]]) -> None:
        """Writes changelog records (each with its offset) in one atomic batch. A
        checkpoint chunk writes its rows but moves no progress: until its mark is
        applied, the partition's progress is what it was."""
        batch = WriteBatch(raw_mode=True)
        for record, offset in records:
            if not isinstance(record, Mark):
                _put_changes(batch, _prefix(record.partition), record.changes)
            if not isinstance(record, Chunk):
                meta = {"progress": record.progress.to_json(), "changelog_next": offset + 1}
                batch.put(_meta_key(record.partition), orjson.dumps(meta))
        self._write(batch)

    def reset(self, partition: int) -> None:
        """Forgets the partition's state and progress (before rebuilding it from a
        checkpoint)."""
        batch = WriteBatch(raw_mode=True)
        batch.delete_range(_prefix(partition), _prefix(partition + 1))
        batch.delete(_meta_key(partition))
        self._write(batch)

    def _write(self, batch: WriteBatch) -> None:
        try:
            self._db.write(batch)
        except Exception as exc:
            raise JoinStateError(f"writing the join state at {self.path} failed: {exc}") from exc

    def load_into(
        self, partition: int, core: JoinerCore, times: tuple[int | None, int | None]
    ) -> None:
        """Restores a fresh core with the partition's stored state."""
        pending: list[Impression] = []
        waiting: list[tuple[str, int]] = []
        done: list[tuple[str, tuple[int, int, bool]]] = []
        prefix = _prefix(partition)
        try:
            for key, value in self._items(prefix):
                kind = key[len(prefix) : len(prefix) + 1].decode()
                rid = key[len(prefix) + 1 :].decode()
                if kind == PENDING:
                    pending.append(decode_impression(value, max_bytes=1 << 30))
                elif kind == WAITING:
                    waiting.append((rid, int(value)))
                elif kind == DONE:
                    label, ts, late = orjson.loads(value)
                    done.append((rid, (int(label), int(ts), bool(late))))
        except Exception as exc:
            raise self._unreadable(partition, exc) from exc
        core.restore(times, pending, waiting, done)

    def _unreadable(self, partition: int, exc: Exception) -> JoinStateError:
        return JoinStateError(
            f"the join state of partition {partition} at {self.path} is unreadable ({exc}): "
            "delete this --state-dir; the next start rebuilds it from the changelog"
        )

    def _items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        items: Iterator[tuple[bytes, bytes]] = cast(Any, self._db).items(from_key=prefix)
        for key, value in items:
            if not key.startswith(prefix):
                return
            yield key, value

    def close(self) -> None:
        self._db.close()


def _put_changes(batch: WriteBatch, prefix: bytes, changes: list[Change]) -> None:
    for kind, rid, value in changes:
        key = prefix + kind.encode() + rid.encode()
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, _encode(kind, value))


def _encode(kind: str, value: Any) -> bytes:
    if kind == PENDING:
        return encode_impression(cast(Impression, value))
    if kind == WAITING:
        return str(int(value)).encode()
    if kind == DONE:
        return orjson.dumps(list(value))
    raise JoinStateError(f"unknown join state kind {kind!r}")
