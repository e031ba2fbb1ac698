"""The RocksDB row store as an embedding source for the trainer (the `EmbeddingSource`
Protocol that `model` defines): whole rows in, whole rows out, on the trainer's device."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from store.rows import RowStore

Initializer = Callable[[np.ndarray], np.ndarray]


class StoreEmbeddings:
    """Reads rows of a batch's unique ids from the store; an absent id reads
    `initializer(ids)`, and is stored only when the trainer writes it back."""

    def __init__(self, store: RowStore, initializer: Initializer, device: str = "cpu") -> None:
        self.store = store
        self._init = initializer
        self._device = torch.device(device)

    @property
    def row_width(self) -> int:
        return self.store.width

    def lookup(self, ids: torch.Tensor, create: bool = True) -> torch.Tensor:
        keys = ids.cpu().numpy()
        rows, found = self.store.get(keys)
        if not found.all():
            rows[~found] = self._init(keys[~found])
        return torch.from_numpy(rows).to(self._device)

    def update(self, ids: torch.Tensor, rows: torch.Tensor) -> None:
        self.store.write(ids.cpu().numpy(), rows.detach().cpu().numpy())
