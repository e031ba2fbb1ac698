"""Composes the trainer's embedding source from `[train]`: in memory, or RocksDB behind
the hot-row cache (`store/`), one store directory per model."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from deploy.errors import ConfigError
from deploy.settings import TrainSettings
from model.embeddings import EmbeddingSource
from model.rows import RowLayout, initial_rows
from model.trainer import resolve_device
from store.cache import CachedEmbeddings
from store.rows import RowStore


def embedding_source(
    train: TrainSettings, layout: RowLayout, model: str, default_dir: Path
) -> EmbeddingSource | None:
    """None means the trainer's own in-memory source."""
    if train.store == "memory":
        return None
    root = train.store_dir or default_dir
    if root is None:
        raise ConfigError("train.store = 'rocksdb' needs train.store_dir")
    store = RowStore(root / model, layout.width)
    initializer = partial(initial_rows, layout=layout, seed=train.seed)
    device = str(resolve_device(train.device))
    return CachedEmbeddings(store, initializer, capacity=train.cache_rows, device=device)
