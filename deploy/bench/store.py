"""`fmstream bench store`: the RocksDB row store and its hot-row cache at production sizes."""

from __future__ import annotations

import resource
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deploy.batch.replay.inputs import CRITEO_SCHEMA
from deploy.bench.train import criteo_like_events
from deploy.wiring import cached_source
from model.features import FeatureEncoder
from model.row_layout import initial_rows
from model.trainer import OnlineTrainer, TrainerConfig, row_layout
from model.zoo import ModelConfig
from store.delta import apply_delta, export_delta
from store.row_store import RowStore

_CHUNK = 100_000


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _rate(n: int, start: float) -> int:
    return round(n / (time.perf_counter() - start))


def bench_store(rows: int, cache_rows: int, batch_ids: int) -> dict[str, Any]:
    layout = row_layout(ModelConfig(name="deepfm"), TrainerConfig())
    init = partial(initial_rows, layout=layout, seed=0)
    rng = np.random.default_rng(0)
    ids = rng.integers(-(2**63), 2**63 - 1, rows, dtype=np.int64)
    out: dict[str, Any] = {
        "benchmark": "store",
        "rows": rows,
        "row_width": layout.width,
        "cache_rows": cache_rows,
        "batch_unique_ids": batch_ids,
    }
    with tempfile.TemporaryDirectory(prefix="fmstream-bench-store-") as tmp:
        store = RowStore(Path(tmp) / "db", layout.width)
        start = time.perf_counter()
        for i in range(0, rows, _CHUNK):
            store.write(ids[i : i + _CHUNK], init(ids[i : i + _CHUNK]))
        out["populate_rows_per_s"] = _rate(rows, start)
        cache = cached_source(store, layout, 0, cache_rows)
        batch = torch.from_numpy(rng.choice(ids, batch_ids, replace=False))
        start = time.perf_counter()
        got = cache.lookup(batch)
        out["lookup_miss_rows_per_s"] = _rate(batch_ids, start)
        start = time.perf_counter()
        got = cache.lookup(batch)
        out["lookup_hit_rows_per_s"] = _rate(batch_ids, start)
        cache.update(batch, got + 0.001)
        start = time.perf_counter()
        cache.flush({"bench": 1})
        out["write_back_rows_per_s"] = _rate(batch_ids, start)
        for i in range(0, cache_rows, batch_ids):  # fill the cache to capacity
            chunk = torch.from_numpy(ids[i : i + batch_ids])
            cache.lookup(chunk)
        out["peak_rss_mb_with_full_cache"] = _rss_mb()
        start = time.perf_counter()
        store.checkpoint(Path(tmp) / "snapshot")
        out["checkpoint_s"] = round(time.perf_counter() - start, 3)
        out.update(_bench_delta(store, Path(tmp), ids, init))
        store.close()
    return out


def _bench_delta(
    store: RowStore, tmp: Path, ids: np.ndarray, init: Any, changed: int = 100_000
) -> dict[str, Any]:
    """A delta of `changed` rows: export from the live store, apply onto the last snapshot."""
    some = ids[:changed]
    store.write(some, init(some) + 0.5, {"bench": 2})
    start = time.perf_counter()
    export_delta(store, tmp / "delta.npz")
    export_s = time.perf_counter() - start
    snapshot = RowStore(tmp / "snapshot", store.width)
    start = time.perf_counter()
    apply_delta(snapshot, tmp / "delta.npz")
    apply_s = time.perf_counter() - start
    snapshot.close()
    return {
        "delta_rows": changed,
        "delta_export_s": round(export_s, 3),
        "delta_apply_s": round(apply_s, 3),
    }


def bench_training(cache_rows: int, batches: int = 60, size: int = 1024) -> dict[str, Any]:
    """DeepFM at the paper's settings, in-memory source vs RocksDB behind the cache."""
    events, labels = criteo_like_events(size * batches)
    enc = FeatureEncoder(CRITEO_SCHEMA)
    data = [
        (enc.encode(events[i : i + size]), labels[i : i + size])
        for i in range(0, len(labels), size)
    ]
    config, tconf = ModelConfig(name="deepfm"), TrainerConfig(device="cpu")
    layout = row_layout(config, tconf)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fmstream-bench-train-") as tmp:
        cached = cached_source(RowStore(Path(tmp) / "db", layout.width), layout, 0, cache_rows)
        for name, source in (("memory", None), ("rocksdb", cached)):
            trainer = OnlineTrainer(config, len(CRITEO_SCHEMA.fields), tconf, source=source)
            warm = batches // 3
            for b, y in data[:warm]:
                trainer.learn_many(b, y)
            start = time.perf_counter()
            for b, y in data[warm:]:
                trainer.learn_many(b, y)
            result[f"deepfm_{name}_examples_per_s"] = _rate(size * (batches - warm), start)
        result["rocksdb_cache_hit_rate"] = round(cached.hits / (cached.hits + cached.misses), 3)
        cached.store.close()
    result["rocksdb_vs_memory"] = round(
        result["deepfm_rocksdb_examples_per_s"] / result["deepfm_memory_examples_per_s"], 3
    )
    return result
