"""Embedding rows in RocksDB: id -> packed float32 row, plus the input position they reflect.

Keys are a one-byte table prefix and the id as a big-endian u64; a row's
weights, its optimizer state and its metadata (occurrence count, last-seen
event time, -1 when unknown) are one value, and `write` puts every row of a
step and the input position in one WriteBatch, so a crash leaves rows that all
belong to one recorded position. Each batch also appends the ids it wrote or
deleted, packed into one value, to a change log that a checkpoint clears: what
the next delta must carry. The row width is recorded on creation and checked on
every open.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, cast

import numpy as np
from rocksdict import AccessType, Checkpoint, Options, Rdict, WriteBatch, WriteOptions

from store.errors import StoreError, StoreFullError, StoreLockedError, StoreSchemaError
from store.rocksdb_options import RocksOptions
from store.sst import ingest_sorted

ROW = b"r"
# Change log: CHANGED + a big-endian u64 sequence -> the packed int64 ids one batch
# wrote or deleted. One entry per batch, not per id: a put per row is what a flush costs.
CHANGED = b"d"
_CHANGED_END = CHANGED + b"\xff" * 9
_META = b"m:meta"
_POSITION = b"m:position"
_EXTRA = b"m:x:"  # + a name: state a writer keeps beside its rows (dense weights...)
FORMAT = 3
_BATCH = 100_000
_STALL_POLL_S = 0.005
# A stall during which RocksDB keeps reporting background errors (a flush that keeps
# failing) is given up on after this long; one without errors is waited out.
_STALL_LIMIT_S = 30.0
_RACED_OPENS = 20


@dataclass(frozen=True)
class Eviction:
    """What `RowStore.evict` deleted: counts by reason, the ids, and the rows left."""

    expired: int
    trimmed: int
    ids: np.ndarray
    remaining: int


def record_dtype(width: int) -> np.dtype[Any]:
    return np.dtype([("row", "<f4", (width,)), ("count", "<i8"), ("seen", "<i8")])


def row_keys(ids: np.ndarray) -> list[bytes]:
    raw = np.ascontiguousarray(ids, dtype=np.int64).view(np.uint64).astype(">u8").tobytes()
    return [ROW + raw[i : i + 8] for i in range(0, len(raw), 8)]


def absent_records(n: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` records of ids the store does not hold (zeros, never seen), and found = False."""
    records = np.zeros(n, dtype=record_dtype(width))
    records["seen"] = -1
    return records, np.zeros(n, dtype=bool)


class RowStore:
    """Rows of one width in one RocksDB directory (read-write, or read-only for snapshots)."""

    def __init__(
        self,
        path: Path,
        width: int,
        options: RocksOptions | None = None,
        read_only: bool = False,
    ) -> None:
        self.path = path
        self.width = width
        self.read_only = read_only
        self._options = (options or RocksOptions()).to_options()
        self._db = _open(path, self._options, read_only)
        if not read_only:
            # Stalls are waited out in `_apply`, not inside RocksDB (see there).
            write_options = WriteOptions()
            write_options.no_slowdown = True
            self._db.set_write_options(write_options)
        self._check_schema()
        self._next_change = self._last_change() + 1

    def _last_change(self) -> int:
        keys: Iterator[bytes] = cast(Any, self._db).keys(backwards=True, from_key=_CHANGED_END)
        last = next(iter(keys), b"")
        return int.from_bytes(last[1:], "big") if last[:1] == CHANGED else -1

    def _change_entry(self, ids: list[np.ndarray]) -> list[tuple[bytes, bytes]]:
        """The change-log entry of one batch that writes or deletes `ids` (none if empty)."""
        packed = b"".join(np.ascontiguousarray(i, dtype="<i8").tobytes() for i in ids)
        if not packed:
            return []
        key = CHANGED + self._next_change.to_bytes(8, "big")
        self._next_change += 1
        return [(key, packed)]

    def _check_schema(self) -> None:
        raw = self._db.get(_META)
        if raw is None:
            if self.read_only:
                raise StoreSchemaError(f"{self.path} is not an fmstream row store (no metadata)")
            self._db.put(_META, json.dumps({"format": FORMAT, "row_width": self.width}).encode())
            return
        meta = json.loads(raw)
        if meta.get("format") != FORMAT or meta.get("row_width") != self.width:
            raise StoreSchemaError(
                f"the store at {self.path} holds rows of width {meta.get('row_width')} "
                f"(format {meta.get('format')}), but this model needs width {self.width}: "
                "point --store at another directory, or delete this one to start over"
            )

    def get(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows [U, width] of `ids` and a mask of which exist (missing rows are zeros)."""
        records, found = self.get_records(ids)
        return np.ascontiguousarray(records["row"]), found

    def get_records(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows with their count and last-seen time (a `record_dtype` array) and which exist."""
        # In key order (an id's key is its u64, big-endian): neighbouring keys share
        # blocks, which halves the time of a large read.
        order = np.argsort(np.ascontiguousarray(ids, dtype=np.int64).view(np.uint64))
        try:
            # A list key is a multi-get (rocksdict's stubs know only single keys).
            values: list[bytes | None] = cast(Any, self._db)[row_keys(ids[order])]
        except Exception as exc:
            raise StoreError(f"reading {len(ids)} rows from {self.path} failed: {exc}") from exc
        records, _ = absent_records(len(ids), self.width)
        present = np.array([v is not None for v in values], dtype=bool)
        found = np.zeros(len(ids), dtype=bool)
        found[order[present]] = True
        if present.any():
            packed = b"".join(v for v in values if v is not None)
            records[order[present]] = np.frombuffer(packed, dtype=record_dtype(self.width))
        return records, found

    def write(
        self,
        ids: np.ndarray,
        rows: np.ndarray,
        position: Mapping[str, Any] | None = None,
        counts: np.ndarray | None = None,
        seen: np.ndarray | None = None,
        deleted: np.ndarray | None = None,
        extras: Mapping[str, bytes] | None = None,
    ) -> None:
        """Puts every row (with its count and last-seen time, if known), deletes the
        `deleted` ids, and records the input position they reflect and the writer's
        `extras` (name -> bytes, read back with `extra`), in one atomic batch."""
        if rows.shape != (len(ids), self.width):
            raise StoreError(
                f"rows of shape {rows.shape} do not fit {len(ids)} ids of width {self.width} "
                f"in {self.path}"
            )
        puts = self._row_puts(ids, rows, counts, seen)
        gone = row_keys(deleted) if deleted is not None else []
        puts += self._meta_puts([ids] if deleted is None else [ids, deleted], position, extras)
        try:
            self._apply(puts, gone)
        except Exception as exc:
            if "No space left" in str(exc):
                raise StoreFullError(
                    f"the disk under {self.path} is full: {len(ids)} rows and position "
                    f"{dict(position) if position else None} were not written; the store still "
                    f"holds position {self.position()}. Free space or move the store ({exc})"
                ) from exc
            raise StoreError(f"writing {len(ids)} rows to {self.path} failed: {exc}") from exc

    def ingest(
        self,
        ids: np.ndarray,
        rows: np.ndarray,
        position: Mapping[str, Any],
        counts: np.ndarray,
        seen: np.ndarray,
        extras: Mapping[str, bytes] | None = None,
    ) -> None:
        """`write` of many distinct rows (no deletes) as one SST file, ingested
        atomically: a few times faster than the memtable for hundreds of thousands of
        rows. Ingested data is newest, so it must not race another writer."""
        order = np.argsort(np.ascontiguousarray(ids, dtype=np.int64).view(np.uint64))
        ids, rows, counts, seen = ids[order], rows[order], counts[order], seen[order]
        if len(np.unique(ids)) != len(ids):
            raise StoreError(f"ingesting into {self.path}: the ids are not distinct")
        # Every metadata key sorts before the row keys: an SST takes keys in order.
        puts = sorted(self._meta_puts([ids], position, extras))
        puts += self._row_puts(ids, rows, counts, seen)
        try:
            ingest_sorted(self._db, self._options, puts, self.path / "ingest.sst")
        except Exception as exc:
            raise StoreError(f"ingesting {len(ids)} rows into {self.path} failed: {exc}") from exc

    def _row_puts(
        self, ids: np.ndarray, rows: np.ndarray, counts: np.ndarray | None, seen: np.ndarray | None
    ) -> list[tuple[bytes, bytes]]:
        records = np.empty(len(ids), dtype=record_dtype(self.width))
        records["row"] = rows
        records["count"] = 0 if counts is None else counts
        records["seen"] = -1 if seen is None else seen
        data = records.tobytes()
        step = records.dtype.itemsize
        return [(key, data[i * step : (i + 1) * step]) for i, key in enumerate(row_keys(ids))]

    def _meta_puts(
        self,
        changed: list[np.ndarray],
        position: Mapping[str, Any] | None,
        extras: Mapping[str, bytes] | None,
    ) -> list[tuple[bytes, bytes]]:
        """A batch's change-log entry, position and extras."""
        puts = self._change_entry(changed)
        if position is not None:
            puts.append((_POSITION, json.dumps(dict(position), sort_keys=True).encode()))
        return puts + _extra_puts(extras)

    def position(self) -> dict[str, Any] | None:
        raw = self._db.get(_POSITION)
        return None if raw is None else dict(json.loads(raw))

    def extra(self, name: str) -> bytes | None:
        """What the last write that named `name` in its extras stored under it."""
        value: bytes | None = self._db.get(_EXTRA + name.encode())
        return value

    def changed_ids(self) -> np.ndarray:
        """Ids written or deleted since the last checkpoint, distinct and sorted."""
        items: Iterator[tuple[bytes, bytes]] = cast(Any, self._db).items(from_key=CHANGED)
        logged = itertools.takewhile(lambda kv: kv[0][:1] == CHANGED, items)
        return np.unique(np.frombuffer(b"".join(v for _, v in logged), dtype="<i8"))

    def evict(self, expire_before: int | None, max_rows: int | None) -> Eviction:
        """Deletes rows last seen before `expire_before` (event time), then the least
        frequent beyond `max_rows`, marking them for the next delta. A full scan: a job
        for a schedule, not the training step."""
        ids, counts, seen = self._scan_stats()
        expired = (seen >= 0) & (seen < expire_before) if expire_before is not None else None
        drop = expired if expired is not None else np.zeros(len(ids), dtype=bool)
        n_expired = int(drop.sum())
        n_trimmed = 0
        if max_rows is not None and len(ids) - n_expired > max_rows:
            alive = np.flatnonzero(~drop)
            # Least frequent first; among equals, the longest unseen.
            order = alive[np.lexsort((seen[alive], counts[alive]))]
            victims = order[: len(alive) - max_rows]
            drop[victims] = True
            n_trimmed = len(victims)
        doomed = ids[drop]
        for start in range(0, len(doomed), _BATCH):
            chunk = doomed[start : start + _BATCH]
            try:
                self._apply(self._change_entry([chunk]), row_keys(chunk))
            except Exception as exc:
                raise StoreError(f"deleting evicted rows from {self.path} failed: {exc}") from exc
        return Eviction(n_expired, n_trimmed, doomed, len(ids) - len(doomed))

    def _scan_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        items: Iterator[tuple[bytes, bytes]] = cast(Any, self._db).items(from_key=ROW)
        keys, values = [], []
        for key, value in itertools.takewhile(lambda kv: kv[0][:1] == ROW, items):
            keys.append(key[1:])
            values.append(value)
        ids = np.frombuffer(b"".join(keys), dtype=">u8").astype(np.uint64).view(np.int64)
        records = np.frombuffer(b"".join(values), dtype=record_dtype(self.width))
        return ids, records["count"].copy(), records["seen"].copy()

    def ids(self) -> np.ndarray:
        """Every stored row's id, sorted by key (a full scan; for tools and tests)."""
        keys: Iterator[bytes] = cast(Any, self._db).keys(from_key=ROW)
        raw = b"".join(k[1:] for k in itertools.takewhile(lambda k: k[:1] == ROW, keys))
        return np.frombuffer(raw, dtype=">u8").astype(np.uint64).view(np.int64)

    def count(self) -> int:
        """Rows stored (a full scan; for tests and tools, not the hot path)."""
        keys: Iterator[bytes] = cast(Any, self._db).keys(from_key=ROW)
        return sum(1 for k in keys if k.startswith(ROW))

    def holds_rows(self) -> bool:
        """Whether any row is stored (one seek)."""
        keys: Iterator[bytes] = cast(Any, self._db).keys(from_key=ROW)
        return any(k.startswith(ROW) for k in itertools.islice(keys, 1))

    def memory(self) -> dict[str, int]:
        """RocksDB's memory in bytes: the block cache (shared by every store opened with
        the same `RocksOptions`: its usage and capacity are theirs together) and this
        store's memtables."""
        db = self._db
        return {
            "block_cache_bytes": int(db.property_int_value("rocksdb.block-cache-usage") or 0),
            "block_cache_capacity": int(db.property_int_value("rocksdb.block-cache-capacity") or 0),
            "memtable_bytes": int(db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0),
        }

    def checkpoint(
        self, dest: Path, restart_changes: bool = True, extras: Mapping[str, bytes] | None = None
    ) -> None:
        """A consistent copy (hard links) of everything written so far, at `dest`. With
        `restart_changes`, the next delta starts from it: the change log is cleared and
        `extras` written in one batch (a writer notes there which copy that is)."""
        if dest.exists():
            raise StoreError(f"checkpoint destination {dest} already exists")
        try:
            Checkpoint(self._db).create_checkpoint(str(dest))
            if restart_changes:
                # No write can come between the copy and this one (one writer).
                self._apply(_extra_puts(extras), [], (CHANGED, _CHANGED_END))
        except Exception as exc:
            raise StoreError(f"checkpointing {self.path} into {dest} failed: {exc}") from exc

    def _apply(
        self,
        puts: Sequence[tuple[bytes, bytes]],
        deletes: Sequence[bytes] = (),
        delete_range: tuple[bytes, bytes] | None = None,
    ) -> None:
        """Writes one atomic batch (the deletes after the puts), retrying while RocksDB
        stalls writes (memtables waiting for a flush). The wait is here because a writer
        stalled inside RocksDB is never woken when the flush it waits for then fails on
        a full disk: the process would hang where it should report the disk full, which
        the next attempt here does. rocksdict consumes a batch even when its write
        fails: each attempt builds its own."""
        stalled_since: float | None = None
        errors = 0
        while True:
            batch = WriteBatch(raw_mode=True)
            if delete_range is not None:
                batch.delete_range(*delete_range)
            for key, value in puts:
                batch.put(key, value)
            for key in deletes:
                batch.delete(key)
            try:
                self._db.write(batch)
                return
            except Exception as exc:
                if "stall" not in str(exc).lower():
                    raise
                now = time.monotonic()
                if stalled_since is None:
                    stalled_since, errors = now, self._background_errors()
                elif now - stalled_since > _STALL_LIMIT_S and self._background_errors() > errors:
                    # Plain, like RocksDB's own errors: each caller says what failed.
                    raise RuntimeError(
                        f"writes stopped for {now - stalled_since:.0f} s while RocksDB's "
                        f"background work keeps failing (see {self.path}/LOG)"
                    ) from exc
            time.sleep(_STALL_POLL_S)

    def _background_errors(self) -> int:
        return int(self._db.property_int_value("rocksdb.background-errors") or 0)

    def close(self) -> None:
        self._db.close()


def _extra_puts(extras: Mapping[str, bytes] | None) -> list[tuple[bytes, bytes]]:
    return [(_EXTRA + name.encode(), value) for name, value in (extras or {}).items()]


def _open(path: Path, options: Options, read_only: bool) -> Rdict:
    if read_only and not path.exists():
        raise StoreError(f"no store at {path}")
    access = AccessType.read_only() if read_only else AccessType.read_write()
    # Named explicitly: a read-only open otherwise gives the column family RocksDB's
    # defaults (its own block cache, no Bloom filter) instead of `options`.
    families = {"default": options}
    for attempt in itertools.count(1):
        try:
            return Rdict(str(path), options=options, column_families=families, access_type=access)
        except Exception as exc:
            # A read-only open of a live store lists its files, then opens them: the
            # writer's compaction can delete one in between. Nothing is wrong; again.
            if not read_only or "No such file" not in str(exc) or attempt == _RACED_OPENS:
                _raise_open_error(path, exc)
        time.sleep(0.05)
    raise AssertionError("unreachable")


def _raise_open_error(path: Path, exc: Exception) -> NoReturn:
    text = str(exc)
    if "lock" in text.lower():
        raise StoreLockedError(
            f"the store at {path} is open in another process or handle ({text}); "
            "stop that trainer first, or give this one its own --store directory"
        ) from exc
    raise StoreError(
        f"cannot open the store at {path}: {text}; restore it from a snapshot, or "
        "delete it (or run with --fresh) to start over"
    ) from exc
