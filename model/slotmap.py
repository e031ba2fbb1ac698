"""A vectorized id -> slot map: open addressing with linear probing, compiled.

Every operation takes a whole batch of ids; numba compiles the probe loops, so
a lookup of 10,000 ids costs about one cache miss each instead of 10,000 dict
calls or a dozen numpy passes. A cell is (key, value) side by side, so a probe
touches one cache line; the value says the cell's state (a slot >= 0, `SLOT_EMPTY`
or `SLOT_TOMB`), which leaves every int64 free to be a key. The table is sized at
twice the slot capacity (load <= 1/2 keeps probe chains short); deletions
leave tombstones, and the table is rebuilt in place once they fill a quarter.
"""

from __future__ import annotations

import numpy as np

from model.kernels import SLOT_EMPTY, SLOT_TOMB, find, put, table_size


class SlotMap:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a slot map needs a capacity >= 1, got {capacity}")
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        self.capacity = capacity
        size = table_size(capacity)
        self._mask = size - 1
        self._cells = np.full((size, 2), SLOT_EMPTY, dtype=np.int64)
        self._len = 0
        self._tombs = 0

    def grow(self, capacity: int) -> None:
        """Raises the capacity to `capacity`, keeping every entry."""
        if capacity > self.capacity:
            self._rebuild(capacity)

    def __len__(self) -> int:
        return self._len

    def get(self, keys: np.ndarray) -> np.ndarray:
        """The slot of each key, -1 where the key is absent."""
        where = find(self._cells, self._mask, np.ascontiguousarray(keys, dtype=np.int64))
        return np.where(where >= 0, self._cells[where, 1], -1)

    def put(self, keys: np.ndarray, slots: np.ndarray) -> None:
        """Adds distinct keys that are not in the map yet."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        if self._len + len(keys) > self.capacity:
            raise ValueError(f"{self._len} + {len(keys)} keys exceed capacity {self.capacity}")
        if self._tombs + self._len + len(keys) > len(self._cells) * 3 // 4:
            self._rebuild()
        values = np.ascontiguousarray(slots, dtype=np.int64)
        if len(values) and values.min() < 0:
            raise ValueError("slots must be >= 0")
        self._tombs -= put(self._cells, self._mask, keys, values)
        self._len += len(keys)

    def delete(self, keys: np.ndarray) -> None:
        """Removes keys (absent ones are ignored)."""
        where = find(self._cells, self._mask, np.ascontiguousarray(keys, dtype=np.int64))
        where = np.unique(where[where >= 0])
        self._cells[where, 1] = SLOT_TOMB
        self._len -= len(where)
        self._tombs += len(where)
        if self._tombs > len(self._cells) // 4:
            self._rebuild()

    def _rebuild(self, capacity: int | None = None) -> None:
        """Every entry into a fresh table (without tombstones), of a new capacity if given."""
        full = self._cells[:, 1] >= 0
        keys, values = self._cells[full, 0], self._cells[full, 1]
        self._allocate(capacity or self.capacity)
        self.put(keys, values)
