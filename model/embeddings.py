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

from model.rows import RowLayout, initial_rows


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
    """A growable slab of rows on one device with a dict from id to slot.

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
        self._slots: dict[int, int] = {}
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def layout(self) -> RowLayout:
        return self._layout

    @property
    def row_width(self) -> int:
        return self._layout.width

    def __len__(self) -> int:
        return len(self._slots)

    def lookup(self, ids: torch.Tensor, create: bool = True) -> torch.Tensor:
        if not create:
            return self._peek(ids)
        slots = self._slots_for(ids)
        self._last = (ids, slots)
        return self._slab.index_select(0, slots)

    def _peek(self, ids: torch.Tensor) -> torch.Tensor:
        keys = ids.tolist()
        slots = list(map(self._slots.get, keys))
        unknown = [i for i, s in enumerate(slots) if s is None]
        known = torch.tensor([s or 0 for s in slots], dtype=torch.int64, device=self._device)
        rows = self._slab.index_select(0, known)
        if unknown:
            fresh = initial_rows(
                np.array([keys[i] for i in unknown], dtype=np.int64), self._layout, self._seed
            )
            rows[unknown] = torch.from_numpy(fresh).to(self._device)
        return rows

    def update(self, ids: torch.Tensor, rows: torch.Tensor) -> None:
        if self._last is not None and self._last[0] is ids:
            slots = self._last[1]
        else:
            slots = self._slots_for(ids)
        self._slab.index_copy_(0, slots, rows.to(self._slab.device, torch.float32))

    def _slots_for(self, ids: torch.Tensor) -> torch.Tensor:
        keys = ids.tolist()
        slots: list[int | None] = list(map(self._slots.get, keys))
        if None in slots:
            self._admit(keys, slots)
        return torch.tensor(slots, dtype=torch.int64, device=self._device)

    def _admit(self, keys: list[int], slots: list[int | None]) -> None:
        new = [i for i, s in enumerate(slots) if s is None]
        first = len(self._slots)
        needed = first + len(new)
        if needed > self._slab.shape[0]:
            grown = torch.zeros(
                (max(needed, 2 * self._slab.shape[0]), self._layout.width),
                dtype=torch.float32,
                device=self._device,
            )
            grown[: self._slab.shape[0]] = self._slab
            self._slab = grown
        new_ids = np.array([keys[i] for i in new], dtype=np.int64)
        init = torch.from_numpy(initial_rows(new_ids, self._layout, self._seed))
        self._slab[first:needed] = init.to(self._device)
        for offset, i in enumerate(new):
            slots[i] = first + offset
            self._slots[keys[i]] = first + offset
