from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.slotmap import SlotMap
from store.cache import CachedEmbeddings
from store.errors import StoreError
from store.row_store import RowStore

W = 3


def _init(ids: np.ndarray) -> np.ndarray:
    return np.repeat(ids.astype(np.float32)[:, None], W, axis=1)


def _cache(tmp_path: Path, capacity: int = 4) -> CachedEmbeddings:
    return CachedEmbeddings(
        RowStore(tmp_path / "db", W), _init, capacity=capacity, slot_index=SlotMap
    )


def _touch(cache: CachedEmbeddings, *ids: int, add: float = 0.0) -> torch.Tensor:
    keys = torch.tensor(ids, dtype=torch.int64)
    rows = cache.lookup(keys) + add
    cache.update(keys, rows)
    return rows


def test_evicted_rows_come_back_with_their_latest_value(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    _touch(cache, 1, 2, add=10)
    for i in range(3, 30):  # far more ids than slots
        _touch(cache, i, add=1)
    torch.testing.assert_close(
        cache.lookup(torch.tensor([2, 1])), torch.tensor([[12.0] * W, [11.0] * W])
    )
    assert len(cache._slot_of) <= cache.capacity
    assert cache.misses > cache.capacity


def test_the_slab_grows_to_what_is_used_and_evicts_only_at_capacity(tmp_path: Path) -> None:
    cache = CachedEmbeddings(
        RowStore(tmp_path / "db", W), _init, capacity=16, slot_index=SlotMap, initial_rows=2
    )
    for i in range(5):
        _touch(cache, i, add=100)
    assert cache.rows_held == 8 and cache.misses == 5  # 2 -> 4 -> 8 rows, no eviction yet
    for i in range(5, 40):
        _touch(cache, i, add=100)
    assert cache.rows_held == 16  # then full: older rows were evicted to make room
    cache.flush()
    assert cache.store.count() == 40
    for part in (np.arange(16), np.arange(16, 40)):
        rows = cache.lookup(torch.from_numpy(part), create=False)
        torch.testing.assert_close(rows, torch.from_numpy(_init(part) + 100))


def test_a_snapshot_reader_keeps_the_rows_of_its_moment(tmp_path: Path) -> None:
    cache = _cache(tmp_path, capacity=8)
    for i in range(12):  # ids 0-3 leave the cache for the store
        _touch(cache, i, add=100)
    cache.flush()
    cache.store.checkpoint(tmp_path / "snap")
    reader = cache.reader_over(RowStore(tmp_path / "snap", W, read_only=True))
    _touch(cache, 1, 11, add=5)  # learning goes on after the snapshot
    for part in (np.arange(7), np.arange(7, 14)):  # 12 and 13 were never learned
        rows = reader.lookup(torch.from_numpy(part), create=False)
        expected = _init(part) + np.where(part < 12, 100, 0)[:, None].astype(np.float32)
        torch.testing.assert_close(rows, torch.from_numpy(expected))
    assert cache.lookup(torch.tensor([11]))[0, 0] == 11 + 105
    with pytest.raises(StoreError, match="flush"):
        cache.reader_over(reader.store)


def test_flush_writes_rows_and_position_together_and_only_then(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    for i in range(10):
        _touch(cache, i, add=100)
    assert cache.store.count() == 0  # nothing reaches RocksDB before a flush
    written = cache.flush({"labeled/0": 99})
    assert written == 10
    rows, found = cache.store.get(np.arange(10))
    assert found.all() and (rows == np.arange(10)[:, None] + 100).all()
    assert cache.store.position() == {"labeled/0": 99}
    assert cache.flush({"labeled/0": 100}) == 0  # nothing changed since


def test_a_flushed_store_serves_a_new_cache(tmp_path: Path) -> None:
    cache = _cache(tmp_path, capacity=8)
    _touch(cache, 5, 6, add=1)
    cache.flush({"step": 1})
    cache.store.close()
    again = CachedEmbeddings(RowStore(tmp_path / "db", W), _init, capacity=8, slot_index=SlotMap)
    torch.testing.assert_close(again.lookup(torch.tensor([6])), torch.tensor([[7.0] * W]))
    assert again.store.position() == {"step": 1}


def test_a_batch_larger_than_the_cache_is_a_clear_error(tmp_path: Path) -> None:
    cache = _cache(tmp_path, capacity=4)
    with pytest.raises(StoreError, match="a batch touches 5 rows but the cache"):
        cache.lookup(torch.arange(5))


_CACHE_WRITER = """
import sys
import numpy as np, torch
from pathlib import Path
from model.slotmap import SlotMap
from store.cache import CachedEmbeddings
from store.row_store import RowStore

store = RowStore(Path(sys.argv[1]), 3)
cache = CachedEmbeddings(
    store, lambda ids: np.zeros((len(ids), 3), np.float32), capacity=500, slot_index=SlotMap
)
start = (store.position() or {"step": 0})["step"]
cache.lookup(torch.arange(10))  # the first lookup loads compiled code: ~0.7 s, not a step
print("ready", flush=True)
for step in range(start + 1, 10**9):
    ids = torch.from_numpy(np.random.default_rng(step).choice(2000, 300, replace=False))
    cache.update(ids, cache.lookup(ids) + 1.0)
    if step % 5 == 0:
        cache.flush({"step": step})
"""


def test_kill_9_during_cached_training_leaves_exactly_the_recorded_steps(
    tmp_path: Path,
) -> None:
    """Rows evicted between flushes must not reach RocksDB before their position does."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    rng = random.Random(3)
    for _ in range(10):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CACHE_WRITER, str(path)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = RowStore(path, W)
        step = (store.position() or {"step": 0})["step"]
        expected = np.zeros(2000)
        for s in range(1, step + 1):
            expected[np.random.default_rng(s).choice(2000, 300, replace=False)] += 1
        rows, _ = store.get(np.arange(2000, dtype=np.int64))
        store.close()
        np.testing.assert_array_equal(rows[:, 0], expected)
    assert step > 0


class _CountingStore(RowStore):
    """A real read-only store that counts the ids looked up in RocksDB."""

    asked = 0

    def get_records(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.asked += len(keys)
        return super().get_records(keys)


def test_a_snapshot_reader_looks_up_an_unseen_id_once_and_still_counts_it(
    tmp_path: Path,
) -> None:
    live = RowStore(tmp_path / "live", W)
    live.write(np.array([1]), np.array([[1, 1, 1]], np.float32), {"p": 1})
    live.checkpoint(tmp_path / "snap")
    live.close()
    snap = _CountingStore(tmp_path / "snap", W, read_only=True)
    cache = CachedEmbeddings(snap, _init, capacity=4, cache_reads=True, slot_index=SlotMap)
    for _ in range(3):
        rows = cache.lookup(torch.tensor([1, 7, 8]), create=False).numpy()
        np.testing.assert_array_equal(rows, [[1, 1, 1], [7, 7, 7], [8, 8, 8]])
        assert sorted(cache.last_unseen.tolist()) == [7, 8]
    assert snap.asked == 3  # 1, 7 and 8 once; then 1 from the slab, 7 and 8 known absent
    # More unseen ids than the bound: the remembered ones are forgotten, not the answers.
    rows = cache.lookup(torch.tensor([20, 21, 22]), create=False).numpy()
    np.testing.assert_array_equal(rows, _init(np.array([20, 21, 22])))
    assert sorted(cache.last_unseen.tolist()) == [20, 21, 22]
    cache.lookup(torch.tensor([7]), create=False)
    assert cache.last_unseen.tolist() == [7] and snap.asked == 7
    snap.close()
