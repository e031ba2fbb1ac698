"""A vectorized id -> slot map: open addressing with linear probing over numpy arrays.

Every operation takes a whole batch of ids and probes them together, one numpy
pass per probe step, so a lookup of 60,000 ids costs a few array passes
instead of 60,000 dict calls. The table is sized at twice the slot capacity
(load <= 1/2 keeps probe chains short); deletions leave tombstones, and the
table is rebuilt in place once they fill a quarter of it.
"""

from __future__ import annotations

import numpy as np

from model.hashing import splitmix64

_EMPTY, _FULL, _TOMB = 0, 1, 2


class SlotMap:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a slot map needs a capacity >= 1, got {capacity}")
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        self.capacity = capacity
        size = 8
        while size < 2 * capacity:
            size *= 2
        self._mask = np.uint64(size - 1)
        self._keys = np.zeros(size, dtype=np.int64)
        self._vals = np.zeros(size, dtype=np.int64)
        self._state = np.zeros(size, dtype=np.int8)
        self._len = 0
        self._tombs = 0

    def grow(self, capacity: int) -> None:
        """Raises the capacity to `capacity`, keeping every entry."""
        if capacity > self.capacity:
            self._rebuild(capacity)

    def __len__(self) -> int:
        return self._len

    def _home(self, keys: np.ndarray) -> np.ndarray:
        return (splitmix64(keys.view(np.uint64)) & self._mask).astype(np.int64)

    def _probe(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Table positions of `keys` (-1 where absent), and where each probe stopped:
        for an absent key, the empty cell from which `put` can continue."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        pos = self._home(keys)
        found = np.full(len(keys), -1, dtype=np.int64)
        active = np.arange(len(keys))
        mask = int(self._mask)
        while len(active):
            p = pos[active]
            state = self._state[p]
            hit = (state == _FULL) & (self._keys[p] == keys[active])
            found[active[hit]] = p[hit]
            active = active[(state != _EMPTY) & ~hit]
            pos[active] = (pos[active] + 1) & mask
        return found, pos

    def get(self, keys: np.ndarray) -> np.ndarray:
        """The slot of each key, -1 where the key is absent."""
        return self.locate(keys)[0]

    def locate(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`get`, plus for each key where a `put` of it may start probing (valid until
        the map next changes): adding new ids after a lookup skips hashing them again."""
        where, stops = self._probe(keys)
        return np.where(where >= 0, self._vals[where], -1), stops

    def put(self, keys: np.ndarray, slots: np.ndarray, start: np.ndarray | None = None) -> None:
        """Adds distinct keys that are not in the map yet (`start`: from `locate`)."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        if self._len + len(keys) > self.capacity:
            raise ValueError(f"{self._len} + {len(keys)} keys exceed capacity {self.capacity}")
        if self._tombs + self._len + len(keys) > len(self._state) * 3 // 4:
            self._rebuild()
            start = None
        pos = self._home(keys) if start is None else start.copy()
        placed = np.zeros(len(keys), dtype=bool)
        active = np.arange(len(keys))
        mask = int(self._mask)
        while len(active):
            p = pos[active]
            open_ = self._state[p] != _FULL
            # Several keys may probe the same open cell: numpy's assignment keeps the
            # last of them, and reading the cell back tells each key whether it won.
            candidates, cells = active[open_], p[open_]
            self._keys[cells] = keys[candidates]
            won = self._keys[cells] == keys[candidates]
            winners, cells = candidates[won], cells[won]
            self._tombs -= int((self._state[cells] == _TOMB).sum())
            self._state[cells] = _FULL
            self._vals[cells] = slots[winners]
            placed[winners] = True
            active = active[~placed[active]]
            pos[active] = (pos[active] + 1) & mask
        self._len += len(keys)

    def delete(self, keys: np.ndarray) -> None:
        """Removes keys (absent ones are ignored)."""
        where = self._probe(keys)[0]
        where = where[where >= 0]
        self._state[where] = _TOMB
        self._len -= len(where)
        self._tombs += len(where)
        if self._tombs > len(self._state) // 4:
            self._rebuild()

    def _rebuild(self, capacity: int | None = None) -> None:
        """Every entry into a fresh table (without tombstones), of a new capacity if given."""
        full = self._state == _FULL
        keys, vals = self._keys[full], self._vals[full]
        self._allocate(capacity or self.capacity)
        self.put(keys, vals)
