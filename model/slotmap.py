"""A vectorized id -> slot map: open addressing with linear probing, compiled.

Every operation takes a whole batch of ids; numba compiles the probe loops, so
a lookup of 10,000 ids costs about one cache miss each instead of 10,000 dict
calls or a dozen numpy passes. A cell is (key, value) side by side, so a probe
touches one cache line; the value says the cell's state (a slot >= 0, `_EMPTY`
or `_TOMB`), which leaves every int64 free to be a key. The table is sized at
twice the slot capacity (load <= 1/2 keeps probe chains short); deletions
leave tombstones, and the table is rebuilt in place once they fill a quarter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np

from model.probing import compiled, home, table_size

_EMPTY, _TOMB = -1, -2

_Probe = Callable[[np.ndarray, int, np.ndarray], np.ndarray]
_Put = Callable[[np.ndarray, int, np.ndarray, np.ndarray], int]


def _find_py(cells: np.ndarray, mask: int, keys: np.ndarray) -> np.ndarray:
    """The table position of each key, -1 where absent."""
    out = np.empty(len(keys), np.int64)
    for i in range(len(keys)):
        key = keys[i]
        p = home(key, mask)
        found = -1
        while True:
            value = cells[p, 1]
            if value == _EMPTY:
                break
            if value >= 0 and cells[p, 0] == key:
                found = p
                break
            p = (p + 1) & mask
        out[i] = found
    return out


def _put_py(cells: np.ndarray, mask: int, keys: np.ndarray, values: np.ndarray) -> int:
    """Places absent, distinct keys in the first free cell of their chains;
    returns how many tombstones they reused."""
    reused = 0
    for i in range(len(keys)):
        p = home(keys[i], mask)
        while cells[p, 1] >= 0:
            p = (p + 1) & mask
        if cells[p, 1] == _TOMB:
            reused += 1
        cells[p, 0] = keys[i]
        cells[p, 1] = values[i]
    return reused


_find = cast(_Probe, compiled(_find_py))
_put = cast(_Put, compiled(_put_py))


class SlotMap:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a slot map needs a capacity >= 1, got {capacity}")
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        self.capacity = capacity
        size = table_size(capacity)
        self._mask = size - 1
        self._cells = np.full((size, 2), _EMPTY, dtype=np.int64)
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
        where = _find(self._cells, self._mask, np.ascontiguousarray(keys, dtype=np.int64))
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
        self._tombs -= _put(self._cells, self._mask, keys, values)
        self._len += len(keys)

    def delete(self, keys: np.ndarray) -> None:
        """Removes keys (absent ones are ignored)."""
        where = _find(self._cells, self._mask, np.ascontiguousarray(keys, dtype=np.int64))
        where = np.unique(where[where >= 0])
        self._cells[where, 1] = _TOMB
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
