"""Deltas: the rows changed since the last checkpoint, shipped instead of a full copy.

`export_delta` writes them (weights, optimizer state, counts and last-seen
times), the ids deleted since (evicted rows) and the
store's position to one `.npz` file, atomically; `apply_delta` writes a delta
into a copy of the previous snapshot, which then equals a full checkpoint
taken at the same moment.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from store.cache import ChangedRows
from store.errors import StoreError, StoreSchemaError
from store.row_store import RowStore, record_dtype


def export_delta(store: RowStore, dest: Path, known: ChangedRows | None = None) -> int:
    """Writes the changed rows, the deleted ids and the position to `dest`; returns how
    many ids the delta carries. `known`: rows the store was last written with, which
    need not be read back (a read costs microseconds a row)."""
    changed = store.changed_ids()
    if known is not None:
        changed = changed[~np.isin(changed, known.ids)]
    records, found = store.get_records(changed)
    ids, deleted, kept = changed[found], changed[~found], records[found]
    if known is not None:
        ids = np.concatenate([ids, known.ids])
        kept = np.concatenate([kept, _records(known, store.width)])
    tmp = dest.with_name(dest.name + ".tmp")
    try:
        with tmp.open("wb") as f:
            np.savez(
                f,
                ids=ids,
                rows=kept["row"],
                counts=kept["count"],
                seen=kept["seen"],
                deleted=deleted,
                width=np.int64(store.width),
                position=np.frombuffer(json.dumps(store.position()).encode(), np.uint8),
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        raise StoreError(f"writing the delta of {store.path} to {dest} failed: {exc}") from exc
    return len(ids) + len(deleted)


def _records(rows: ChangedRows, width: int) -> np.ndarray:
    out = np.empty(len(rows.ids), dtype=record_dtype(width))
    out["row"], out["count"], out["seen"] = rows.rows, rows.counts, rows.seen
    return out


def apply_delta(store: RowStore, delta: Path) -> int:
    """Writes a delta's rows and position into `store` in one batch; returns how many rows."""
    try:
        with np.load(delta) as data:
            ids, rows, width = data["ids"], data["rows"], int(data["width"])
            counts, seen, deleted = data["counts"], data["seen"], data["deleted"]
            position = json.loads(data["position"].tobytes())
    except (OSError, KeyError, ValueError) as exc:
        raise StoreError(f"cannot read the delta {delta}: {exc}") from exc
    if width != store.width:
        raise StoreSchemaError(
            f"the delta {delta} has rows of width {width}, the store at {store.path} {store.width}"
        )
    store.write(ids, rows, position, counts, seen, deleted)
    return len(ids) + len(deleted)
