"""Where embedding rows live: the interface the trainer needs, and an in-memory implementation.

The RocksDB parameter store (`store/`) satisfies the same Protocol; `deploy`
wires it in. A source hands out whole rows (`RowLayout`: weights and the
per-row optimizer state) and takes them back after the step, so weights and
optimizer state are always stored together.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from model.row_layout import RowLayout, initial_rows
from model.slotmap import SlotMap


class EmbeddingSource(Protocol):
    @property
    def row_width(self) -> int:
        """Floats per row: the layout's parameters and optimizer state."""
        ...

    def lookup(self, ids: torch.Tensor, create: bool = True) -> torch.Tensor:
        """Rows [U, layout.width] on the trainer's device for unique int64 `ids` [U].

        Ids never seen before read their initial rows, which are stored only
        when `create` is true (learning, not scoring)."""
        ...

    def update(self, ids: torch.Tensor, rows: torch.Tensor) -> None:
        """Stores the new value of the rows of `ids` (as returned by the last lookup)."""
        ...


class InMemoryEmbeddings:
    """A growable slab of rows on one device, with a vectorized id -> slot map.

    Memory grows with the number of ids; for tests, small runs and benchmarks.
    """

    def __init__(
        self,
        layout: RowLayout,
        seed: int = 0,
        device: torch.device | str = "cpu",
        capacity: int = 1 << 16,
    ) -> None:
        self._layout = layout
        self._seed = seed
        self._device = torch.device(device)
        self._slab = torch.zeros((capacity, layout.width), dtype=torch.float32, device=self._device)
        self._slots = SlotMap(capacity)
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def layout(self) -> RowLayout:
        return self._layout

    @property
    def row_width(self) -> int:
        return self._layout.width

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: object) -> bool:
        """Whether id `key` has a stored row."""
        return isinstance(key, int) and bool(self._slots.get(np.array([key]))[0] >= 0)

    def lookup(self, ids: torch.Tensor, create: bool = True) -> torch.Tensor:
        keys = ids.cpu().numpy()
        slots = self._slots.get(keys)
        unknown = np.flatnonzero(slots < 0)
        if create:
            if len(unknown):
                slots[unknown] = self._admit(keys[unknown])
            where = torch.from_numpy(slots).to(self._device)
            self._last = (ids, where)
            return self._slab.index_select(0, where)
        rows = self._slab.index_select(0, torch.from_numpy(np.maximum(slots, 0)).to(self._device))
        if len(unknown):
            fresh = initial_rows(keys[unknown], self._layout, self._seed)
            rows[torch.from_numpy(unknown).to(self._device)] = torch.from_numpy(fresh).to(
                self._device
            )
        return rows

    def update(self, ids: torch.Tensor, rows: torch.Tensor) -> None:
        if self._last is not None and self._last[0] is ids:
            slots = self._last[1]
        else:
            found = self._slots.get(ids.cpu().numpy())
            if (found < 0).any():
                raise KeyError("update of ids that were never looked up with create=True")
            slots = torch.from_numpy(found).to(self._device)
        self._slab.index_copy_(0, slots, rows.to(self._slab.device, torch.float32))

    def _admit(self, keys: np.ndarray) -> np.ndarray:
        """Stores the initial rows of new distinct `keys`; returns their slots."""
        first = len(self._slots)
        needed = first + len(keys)
        if needed > self._slab.shape[0]:
            capacity = max(needed, 2 * self._slab.shape[0])
            # Rows past `needed` are written when their ids arrive: no need to zero them.
            grown = torch.empty(
                (capacity, self._layout.width), dtype=torch.float32, device=self._device
            )
            grown[: self._slab.shape[0]] = self._slab
            self._slab = grown
            self._slots.grow(capacity)
        init = torch.from_numpy(initial_rows(keys, self._layout, self._seed))
        self._slab[first:needed] = init.to(self._device)
        slots = np.arange(first, needed, dtype=np.int64)
        self._slots.put(keys, slots)
        return slots
