"""Composes the trainer's embedding source from `[train]`: in memory, or RocksDB behind
the hot-row cache (`store/`), one store directory per model."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from deploy.runtime.errors import ConfigError
from deploy.settings.train import TrainSettings
from model.embeddings import EmbeddingSource
from model.features import FieldSpec
from model.hashing import DEFAULT, feature_id
from model.row_layout import RowLayout, initial_rows
from model.slotmap import SlotMap
from model.trainer import resolve_device
from store import claim
from store.admission import Admission, CountMinSketch
from store.cache import CachedEmbeddings
from store.row_store import RowStore


def admission_for(train: TrainSettings, fields: Sequence[FieldSpec]) -> Admission | None:
    """Admission after `admit_after` sightings, or a field's own count from
    `admit_after_fields`; None when every value is admitted at once."""
    per_field = train.field_thresholds()
    unknown = sorted(set(per_field) - {f.name for f in fields})
    if unknown:
        raise ConfigError(f"train.admit_after_fields names fields the data lacks: {unknown}")
    thresholds = np.array([per_field.get(f.name, train.admit_after) for f in fields], np.int64)
    if (thresholds <= 1).all():
        return None
    return admission_over(thresholds, fields, CountMinSketch(train.sketch_width, seed=train.seed))


def admission_over(
    thresholds: np.ndarray, fields: Sequence[FieldSpec], sketch: CountMinSketch
) -> Admission:
    """Admission by `thresholds` (one per field, the encoder's order) over `sketch`,
    each field's not-yet-admitted ids reading its shared default row."""
    defaults = np.array([feature_id(f.name, DEFAULT) for f in fields], dtype=np.int64)
    return Admission(thresholds, defaults, sketch)


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
    device = str(resolve_device(train.device))
    return cached_source(store, layout, train.seed, train.cache_rows, device)


def cached_source(
    store: RowStore,
    layout: RowLayout,
    seed: int,
    capacity: int,
    device: str = "cpu",
    cache_reads: bool = False,
) -> CachedEmbeddings:
    """The one place a model meets its RocksDB rows: the hot-row cache over `store`,
    new rows initialized for `layout` from `seed`, ids mapped to slots by SlotMap."""
    initializer = partial(initial_rows, layout=layout, seed=seed)
    return CachedEmbeddings(
        store, initializer, capacity, device, cache_reads=cache_reads, slot_index=SlotMap
    )


def prepare_store(train: TrainSettings, default_dir: Path, reuse: str | None) -> str | None:
    """Readies the run's store directory and says what it starts from. The run's own
    directory (`default_dir`) starts empty unless `reuse` is "resume"; one named by
    `train.store_dir` holding rows needs "resume" or "fresh". Deleting takes the
    store's locks first, so a store another process has open is refused, not corrupted."""
    if train.store == "memory":
        return None
    root = train.store_dir or default_dir
    if reuse == "fresh" or (reuse is None and train.store_dir is None):
        claim.remove(root)
        return None
    rows = claim.stored_rows(root)
    if reuse == "resume":
        return f"store {root}: continuing from {rows} rows"
    if rows:
        raise ConfigError(
            f"the store at {root} holds {rows} rows from an earlier run: pass --resume to "
            "continue from them, or --fresh to delete them and start over"
        )
    return None
