"""`fmstream bench publish`: one snapshot of a large store, as the trainer takes it.

A store of `rows` rows behind a hot-row cache, DeepFM learning Criteo-shaped
batches through it; a first snapshot (the delta base), a checkpoint, more
learning (about the 10 s between two checkpoints on a CPU), then the timed
snapshot: the pause the training loop sees (a copy of the rows changed since
the checkpoint, the store's RocksDB checkpoint, `Publisher.capture`) and its
whole wall time (with `finish`: those rows written into the copy, the delta,
every file's checksum, the rename and promotion).
"""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from deploy.apps.train import checkpoint
from deploy.apps.train.publish import Gate, Publisher
from deploy.batch.replay.inputs import CRITEO_SCHEMA
from deploy.bench.train import criteo_like_events
from deploy.wiring import cached_source
from model.ctr_metrics import StreamingMetrics
from model.features import FeatureEncoder
from model.row_layout import initial_rows
from model.trainer import OnlineTrainer, TrainerConfig, row_layout
from model.zoo import ModelConfig
from store.cache import CachedEmbeddings
from store.row_store import RowStore

_CHUNK = 100_000


def _learn(trainer: OnlineTrainer, batches: list[tuple[Any, np.ndarray]]) -> None:
    for encoded, labels in batches:
        trainer.learn_many(encoded, labels)


def _snapshot(
    publisher: Publisher, source: CachedEmbeddings, trainer: OnlineTrainer, seen: int
) -> dict[str, float]:
    """As the daemon publishes: the changed rows copied, not flushed, in the pause."""
    start = time.perf_counter()
    learned = (trainer, CRITEO_SCHEMA, None)
    checkpointed = checkpoint.state({0: (seen, 0)}, {"newest_ms": seen}, learned)
    captured = publisher.capture(
        source, checkpointed, trainer, CRITEO_SCHEMA, "interval", StreamingMetrics().result()
    )
    paused = time.perf_counter() - start
    done = publisher.finish(captured)
    assert done.promoted, done.reasons
    return {
        "pause_s": paused,
        "wall_s": time.perf_counter() - start,
        "rows_unwritten": len(captured.unwritten.rows.ids),
    }


def bench_publish(
    rows: int, cache_rows: int, batches: int = 40, size: int = 4096
) -> dict[str, Any]:
    config, tconf = ModelConfig(name="deepfm"), TrainerConfig(device="cpu")
    layout = row_layout(config, tconf)
    events, labels = criteo_like_events(size * batches * 2)
    enc = FeatureEncoder(CRITEO_SCHEMA)
    data = [
        (enc.encode(events[i : i + size]), labels[i : i + size])
        for i in range(0, len(labels), size)
    ]
    del events
    out: dict[str, Any] = {"benchmark": "publish", "rows": rows, "cache_rows": cache_rows}
    with tempfile.TemporaryDirectory(prefix="fmstream-bench-publish-") as tmp:
        store = RowStore(Path(tmp) / "store", layout.width)
        init = partial(initial_rows, layout=layout, seed=0)
        ids = np.random.default_rng(1).integers(-(2**63), 2**63 - 1, rows, dtype=np.int64)
        start = time.perf_counter()
        for i in range(0, rows, _CHUNK):
            store.write(ids[i : i + _CHUNK], init(ids[i : i + _CHUNK]))
        out["populate_s"] = round(time.perf_counter() - start, 1)
        source = cached_source(store, layout, 0, cache_rows)
        trainer = OnlineTrainer(config, len(CRITEO_SCHEMA.fields), tconf, source)
        publisher = Publisher(Path(tmp) / "snapshots", "deepfm", Gate(), time.time)
        _learn(trainer, data[:batches])
        first = _snapshot(publisher, source, trainer, batches)
        # The daemon's checkpoint (every 10 s) flushes the rows; a snapshot copies only
        # those changed since. The delta carries both.
        checkpoint.save(source, {0: (batches, 0)}, {}, (trainer, CRITEO_SCHEMA, None))
        _learn(trainer, data[batches:])
        second = _snapshot(publisher, source, trainer, 2 * batches)
        manifest = publisher.manifest(2)
        assert manifest is not None and manifest["delta"] is not None
        store.close()
    return {
        **out,
        "row_width": layout.width,
        "batches_between": batches,
        "batch": size,
        "rows_unwritten_at_publish": int(second["rows_unwritten"]),
        "delta_ids": manifest["delta"]["ids"],
        "first_snapshot": {
            "pause_s": round(first["pause_s"], 3),
            "wall_s": round(first["wall_s"], 3),
        },
        "pause_s": round(second["pause_s"], 3),
        "wall_s": round(second["wall_s"], 3),
        "files": len(manifest["files"]),
    }
