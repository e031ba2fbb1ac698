"""Frozen copies of live trainers: the snapshot a period is scored with.

A RocksDB-backed trainer is flushed and checkpointed (hard links), and the copy
starts with a copy of the live row cache and reads the rest from the checkpoint,
read-only, so nothing learned later can reach it; an
in-memory trainer is deep-copied. Either way the copy also takes the dense
weights and the admission state as they are now.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

from model.trainer import OnlineTrainer
from store.cache import CachedEmbeddings
from store.row_store import RowStore


class Freezer:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._open: dict[str, tuple[RowStore, Path]] = {}

    def freeze(self, name: str, live: OnlineTrainer, position: dict[str, Any]) -> OnlineTrainer:
        source = live.source
        if isinstance(source, CachedEmbeddings):
            source.flush(position)
            dest = self._root / name / f"after-{position['period']}"
            shutil.rmtree(dest, ignore_errors=True)
            dest.parent.mkdir(parents=True, exist_ok=True)
            source.store.checkpoint(dest)
            store = RowStore(dest, source.store.width, read_only=True)
            # It starts with the live cache's rows; the checkpoint serves the rest.
            frozen_source: Any = source.reader_over(store)
            self._replace(name, store, dest)
        else:
            frozen_source = copy.deepcopy(source)
        frozen = OnlineTrainer(
            live.model_config,
            live.model.num_fields,
            live.config,
            frozen_source,
            copy.deepcopy(live.id_filter),
        )
        frozen.model.load_state_dict(live.model.state_dict())
        return frozen

    def _replace(self, name: str, store: RowStore, path: Path) -> None:
        previous = self._open.pop(name, None)
        if previous is not None:
            previous[0].close()
            shutil.rmtree(previous[1], ignore_errors=True)
        self._open[name] = (store, path)

    def close(self) -> None:
        for store, _ in self._open.values():
            store.close()
        self._open.clear()
