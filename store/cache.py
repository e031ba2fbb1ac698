"""A fixed-capacity hot-row cache on the training device in front of the row store.

Rows live in one slab, which doubles as rows arrive up to [capacity, width]; a
vectorized `SlotIndex` maps id -> slot; once the slab is full, CLOCK picks
victims among slots the current batch does not use. Updates only touch the
slab. A dirty victim moves to a write-back buffer (still readable), and
`flush(position)` writes every dirty row, the write-back buffer and the input
position in one WriteBatch, so the store only ever holds rows of recorded
positions. Memory is bounded by the capacity plus what is evicted between
flushes, not by the number of ids.

Each row also carries how many learning steps touched it and the event time
of the last one (`observe` sets the current event time), which `RowStore.evict`
uses to drop rows by TTL or frequency.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from store.errors import StoreError
from store.row_store import Eviction, RowStore, absent_records

Initializer = Callable[[np.ndarray], np.ndarray]


class SlotIndex(Protocol):
    """id -> slot for whole batches of int64 ids (`model.slotmap.SlotMap` is one,
    passed in by `deploy`: the cache and the in-memory source share it)."""

    def __len__(self) -> int: ...

    def get(self, keys: np.ndarray) -> np.ndarray:
        """The slot of each key, -1 where the key is absent."""
        ...

    def put(self, keys: np.ndarray, slots: np.ndarray) -> None:
        """Adds distinct keys that are not in the index yet."""
        ...

    def delete(self, keys: np.ndarray) -> None:
        """Removes keys (absent ones are ignored)."""
        ...

    def grow(self, capacity: int) -> None:
        """Raises the capacity, keeping every entry."""
        ...


# Per-slot bookkeeping beside the slab: name, dtype, value of an empty slot.
_PER_SLOT = (
    ("_id_at", np.int64, 0),
    ("_used", np.bool_, 0),
    ("_dirty", np.bool_, 0),
    ("_referenced", np.bool_, 0),
    ("_count", np.int64, 0),
    ("_seen", np.int64, -1),
)

# The cache starts this small and doubles up to its capacity, so that a small run
# (or a snapshot read by few requests) holds what it uses, not the capacity.
INITIAL_ROWS = 1 << 16

# At most this many ids a read-only cache knows to be absent from its snapshot.
ABSENT_IDS = 1 << 18


@dataclass(frozen=True)
class ChangedRows:
    """Rows not yet written to the store: ids, rows [N, width], counts, last-seen."""

    ids: np.ndarray
    rows: np.ndarray
    counts: np.ndarray
    seen: np.ndarray


class CachedEmbeddings:
    def __init__(
        self,
        store: RowStore,
        initializer: Initializer,
        capacity: int,
        device: str = "cpu",
        cache_reads: bool = False,
        *,
        slot_index: Callable[[int], SlotIndex],
        initial_rows: int = INITIAL_ROWS,
    ) -> None:
        """`slot_index(capacity)` makes the id -> slot index. `cache_reads`: scoring
        also caches the rows it reads (for a read-only snapshot, whose rows never
        change); otherwise scoring never touches the cache. The slab starts at
        `initial_rows` and doubles up to `capacity`."""
        self.store = store
        self._cache_reads = cache_reads
        self._init = initializer
        self.capacity = capacity
        self._device = torch.device(device)
        start = max(1, min(capacity, initial_rows))
        self._slab = torch.zeros((start, store.width), dtype=torch.float32, device=self._device)
        self._slot_of = slot_index(start)
        self._slot_index = slot_index
        self._absent_bound = min(ABSENT_IDS, capacity)
        self._absent = self._no_absent_ids()
        self._id_at: np.ndarray
        self._used: np.ndarray
        self._dirty: np.ndarray
        self._referenced: np.ndarray
        self._count: np.ndarray
        self._seen: np.ndarray
        for name, dtype, empty in _PER_SLOT:
            setattr(self, name, np.full(start, empty, dtype=dtype))
        self._now = -1
        self._hand = 0
        # While the store started empty and no row has left the cache, every stored
        # row is cached too: a row the cache lacks is new, and reading it is skipped.
        self._holds_all = not store.holds_rows()
        self._written_back: dict[int, tuple[np.ndarray, int, int]] = {}
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None
        self.hits = 0
        self.misses = 0
        # The ids the last scoring lookup found neither cached nor stored.
        self.last_unseen = np.zeros(0, dtype=np.int64)

    @property
    def row_width(self) -> int:
        return self.store.width

    @property
    def rows_held(self) -> int:
        """Rows the slab has room for now (it grows up to `capacity`)."""
        return len(self._used)

    def observe(self, event_ts: int) -> None:
        """The event time that the next learning steps stamp on the rows they touch."""
        self._now = max(self._now, event_ts)

    def lookup(self, ids: torch.Tensor, create: bool = True) -> torch.Tensor:
        keys = ids.cpu().numpy()
        if (create or self._cache_reads) and len(keys) > self.capacity:
            raise StoreError(
                f"a batch touches {len(keys)} rows but the cache at {self.store.path} holds "
                f"{self.capacity}; raise the cache size or lower the batch size"
            )
        slots = self._slot_of.get(keys)
        missing = slots < 0
        self.hits += int((~missing).sum())
        self.misses += int(missing.sum())
        self._referenced[slots[~missing]] = True
        if not create:
            self.last_unseen = self.last_unseen[:0]
            if missing.any():
                return self._peek(keys, slots, missing)
        if missing.any():
            slots[missing] = self._load(keys[missing], slots[~missing])
            self._referenced[slots[missing]] = True
        if create:
            self._count[slots] += 1
            self._seen[slots] = self._now
        index = torch.from_numpy(slots).to(self._device)
        self._last = (ids, index)
        return self._slab.index_select(0, index)

    def update(self, ids: torch.Tensor, rows: torch.Tensor) -> None:
        if self._last is not None and self._last[0] is ids:
            index = self._last[1]
        else:
            slots = self._slot_of.get(ids.cpu().numpy())
            if (slots < 0).any():
                raise StoreError(
                    f"update of rows not in the cache of {self.store.path}: "
                    "update() takes back rows from lookup()"
                )
            index = torch.from_numpy(slots).to(self._device)
        self._slab.index_copy_(0, index, rows.to(self._device, torch.float32))
        self._dirty[index.cpu().numpy()] = True

    def flush(
        self, position: Mapping[str, Any] | None = None, extras: Mapping[str, bytes] | None = None
    ) -> int:
        """Writes every changed row, `position` and the writer's `extras` (`RowStore.write`)
        atomically; returns the rows written."""
        changed = self.changed()
        self.store.write(
            changed.ids, changed.rows, position, changed.counts, changed.seen, extras=extras
        )
        self._dirty[:] = False
        self._written_back.clear()
        return len(changed.ids)

    def changed(self) -> ChangedRows:
        """A copy of every row changed since the last flush (held in the cache or
        written back from it), with counts and last-seen times: what a flush writes."""
        dirty = np.flatnonzero(self._dirty)
        ids = [self._id_at[dirty]]
        rows = [self._slab[torch.from_numpy(dirty).to(self._device)].cpu().numpy()]
        counts, seen = [self._count[dirty]], [self._seen[dirty]]
        if self._written_back:
            ids.append(np.fromiter(self._written_back, np.int64, len(self._written_back)))
            pending = list(self._written_back.values())
            rows.append(np.stack([p[0] for p in pending]))
            counts.append(np.array([p[1] for p in pending], dtype=np.int64))
            seen.append(np.array([p[2] for p in pending], dtype=np.int64))
        return ChangedRows(
            np.concatenate(ids), np.concatenate(rows), np.concatenate(counts), np.concatenate(seen)
        )

    def reader_over(self, snapshot: RowStore) -> CachedEmbeddings:
        """A read-only cache over `snapshot` (a checkpoint of this cache's store, taken
        right after a flush) holding a copy of this cache's rows: scoring it reads the
        snapshot only for rows this cache had evicted. Learning here later changes
        neither."""
        if self._dirty.any() or self._written_back:
            raise StoreError(f"flush {self.store.path} before reading a snapshot of it")
        twin = copy.copy(self)
        twin.store, twin._cache_reads = snapshot, True
        twin._absent = twin._no_absent_ids()
        twin._slab = self._slab.clone()
        twin._slot_of = copy.deepcopy(self._slot_of)
        for name, _, _ in _PER_SLOT:
            setattr(twin, name, getattr(self, name).copy())
        twin._written_back, twin._last = {}, None
        twin.hits = twin.misses = 0
        return twin

    def evict(self, expire_before: int | None, max_rows: int | None) -> Eviction:
        """Deletes stored rows by TTL and count (`RowStore.evict`) and drops the clean
        cached copies of deleted ids; rows changed since the last flush stay, as they
        were touched after the stored copy was judged. Flush first so the store's
        last-seen times are current."""
        eviction = self.store.evict(expire_before, max_rows)
        slots = self._slot_of.get(eviction.ids)
        clean = slots[(slots >= 0)]
        clean = clean[~self._dirty[clean]]
        self._slot_of.delete(self._id_at[clean])
        self._used[clean] = False
        self._referenced[clean] = False
        return eviction

    def _peek(self, keys: np.ndarray, slots: np.ndarray, missing: np.ndarray) -> torch.Tensor:
        """Rows for scoring: absent ones are read or initialized but never stored. With
        `cache_reads` the rows read from the store are cached; initialized ones never
        are (they are recomputed on demand), so unseen ids do not fill the cache, and
        the ids found absent are remembered (a snapshot never gains rows) so that they
        are not looked up in the store again."""
        rows = np.empty((len(keys), self.store.width), dtype=np.float32)
        rows[~missing] = self._slab[torch.from_numpy(slots[~missing])].cpu().numpy()
        asked, at = keys[missing], np.flatnonzero(missing)
        known = (
            self._absent.get(asked) >= 0 if self._absent is not None else np.zeros(len(asked), bool)
        )
        records, found = self._read(asked[~known], take=False)
        rows[at[~known]] = records["row"]
        if known.any():
            rows[at[known]] = self._init(asked[known])
        unseen = asked[~known][~found]
        self.last_unseen = np.concatenate([asked[known], unseen])
        self._remember_absent(unseen)
        if self._cache_reads and found.any():
            self._place(asked[~known][found], records[found], slots[~missing], dirty=False)
        return torch.from_numpy(rows).to(self._device)

    def _no_absent_ids(self) -> SlotIndex | None:
        """An empty index of ids known to be absent: only over an immutable snapshot."""
        return self._slot_index(self._absent_bound) if self._cache_reads else None

    def _remember_absent(self, ids: np.ndarray) -> None:
        if self._absent is None or not len(ids):
            return
        ids = ids[: self._absent_bound]
        if len(self._absent) + len(ids) > self._absent_bound:
            self._absent = self._no_absent_ids()  # forgetting them all bounds the memory
        assert self._absent is not None
        self._absent.put(ids, np.zeros(len(ids), dtype=np.int64))

    def _read(self, keys: np.ndarray, take: bool) -> tuple[np.ndarray, np.ndarray]:
        """Records from the write-back buffer, else the store, else initial; and which existed."""
        if self._holds_all:
            records, found = absent_records(len(keys), self.store.width)
        else:
            records, found = self.store.get_records(keys)
        for i, key in enumerate(keys.tolist()):
            pending = self._written_back.pop(key, None) if take else self._written_back.get(key)
            if pending is not None:
                records[i] = pending
                found[i] = True
        if not found.all():
            records["row"][~found] = self._init(keys[~found])
        return records, found

    def _load(self, keys: np.ndarray, protect: np.ndarray) -> np.ndarray:
        records, found = self._read(keys, take=True)
        # A row new to the store is dirty from the start: flush must persist it.
        return self._place(keys, records, protect, dirty=~found)

    def _place(
        self, keys: np.ndarray, records: np.ndarray, protect: np.ndarray, dirty: Any
    ) -> np.ndarray:
        """Puts absent `keys` with their records into free or evicted slots; their slots."""
        rows = np.ascontiguousarray(records["row"])
        slots = self._free_slots(len(keys), protect)
        self._slab[torch.from_numpy(slots).to(self._device)] = torch.from_numpy(rows).to(
            self._device
        )
        self._id_at[slots] = keys
        self._count[slots] = records["count"]
        self._seen[slots] = records["seen"]
        self._used[slots] = True
        self._dirty[slots] = dirty
        self._slot_of.put(keys, slots)
        return slots

    def _free_slots(self, n: int, protect: np.ndarray) -> np.ndarray:
        free = np.flatnonzero(~self._used)[:n]
        if len(free) < n and len(self._used) < self.capacity:
            self._grow(len(self._used) + n - len(free))
            free = np.flatnonzero(~self._used)[:n]
        if len(free) == n:
            return free
        self._referenced[protect] = True
        victims = self._clock(n - len(free), protect)
        self._evict(victims)
        return np.concatenate([free, victims])

    def _grow(self, at_least: int) -> None:
        """Doubles the slots (at least to `at_least`, at most to the capacity)."""
        old = len(self._used)
        size = min(self.capacity, max(2 * old, at_least))
        slab = torch.zeros((size, self.store.width), dtype=torch.float32, device=self._device)
        slab[:old] = self._slab
        self._slab = slab

        for name, dtype, empty in _PER_SLOT:
            grown = np.full(size, empty, dtype=dtype)
            grown[:old] = getattr(self, name)
            setattr(self, name, grown)
        self._slot_of.grow(size)

    def _clock(self, n: int, protect: np.ndarray) -> np.ndarray:
        """CLOCK, vectorized: from the hand, the first unreferenced slots not in use by
        this batch; the referenced slots the hand passes lose their bit."""
        keep = ~self._used  # free slots are already handed out
        keep[protect] = True
        order = np.roll(np.arange(len(self._used)), -self._hand)
        open_ = ~keep[order]
        candidates = order[open_ & ~self._referenced[order]]
        if len(candidates) < n:
            self._referenced[order[open_]] = False
            candidates = order[open_]
            chosen = candidates[:n]
        else:
            chosen = candidates[:n]
            passed = order[: int(np.flatnonzero(order == chosen[-1])[0]) + 1]
            self._referenced[passed[open_[: len(passed)]]] = False
        self._hand = int((chosen[-1] + 1) % len(self._used))
        return np.asarray(chosen, dtype=np.int64)

    def _evict(self, slots: np.ndarray) -> None:
        self._holds_all = False
        dirty = slots[self._dirty[slots]]
        if len(dirty):
            rows = self._slab[torch.from_numpy(dirty).to(self._device)].cpu().numpy()
            stats = zip(self._count[dirty].tolist(), self._seen[dirty].tolist(), strict=True)
            self._written_back.update(
                (key, (row, count, seen))
                for key, row, (count, seen) in zip(
                    self._id_at[dirty].tolist(), rows, stats, strict=True
                )
            )
        self._slot_of.delete(self._id_at[slots])
        self._dirty[slots] = False
        self._used[slots] = False
