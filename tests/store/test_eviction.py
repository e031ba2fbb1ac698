from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model.slotmap import SlotMap
from store.cache import CachedEmbeddings
from store.row_store import RowStore

W = 2


def test_ttl_then_least_frequent_eviction(tmp_path: Path) -> None:
    store = RowStore(tmp_path / "db", W)
    ids = np.arange(10, dtype=np.int64)
    counts = np.array([5, 1, 9, 2, 7, 3, 8, 4, 6, 0])
    seen = np.array([100, 900, 950, 980, 120, 990, 995, 999, 50, -1])
    store.write(ids, np.zeros((10, W), dtype=np.float32), {"p": 1}, counts, seen)
    # Unseen since 500: ids 0, 4, 8 (id 9's last-seen time is unknown: never expired).
    eviction = store.evict(expire_before=500, max_rows=4)
    assert (eviction.expired, eviction.trimmed, eviction.remaining) == (3, 3, 4)
    assert sorted(eviction.ids.tolist()) == [0, 1, 3, 4, 8, 9]
    _, found = store.get(ids)
    # Of the 7 left, the 4 most frequent stay: 6 (8), 2 (9), 7 (4), 5 (3).
    assert np.flatnonzero(found).tolist() == [2, 5, 6, 7]
    assert store.count() == 4 and store.position() == {"p": 1}
    store.close()


def test_the_cache_stamps_touched_rows_with_count_and_event_time(tmp_path: Path) -> None:
    store = RowStore(tmp_path / "db", W)
    cache = CachedEmbeddings(
        store, lambda ids: np.zeros((len(ids), W), np.float32), 2, slot_index=SlotMap
    )
    for ts, keys in ((1_000, [1, 2]), (2_000, [1, 3]), (3_000, [1, 4])):
        cache.observe(ts)
        batch = torch.tensor(keys)
        cache.update(batch, cache.lookup(batch) + 1)
    cache.flush({"p": 3})
    records, found = store.get_records(np.array([1, 2, 3, 4]))
    assert found.all()
    assert records["count"].tolist() == [3, 1, 1, 1]
    assert records["seen"].tolist() == [3_000, 1_000, 2_000, 3_000]
    # Rows reloaded after eviction keep counting from their stored values.
    cache.observe(4_000)
    batch = torch.tensor([2])
    cache.update(batch, cache.lookup(batch))
    cache.flush()
    assert store.get_records(np.array([2]))[0]["count"].tolist() == [2]
    eviction = store.evict(expire_before=2_500, max_rows=None)
    assert eviction.ids.tolist() == [3] and eviction.trimmed == 0
    store.close()


def test_cache_eviction_drops_clean_copies_and_keeps_rows_touched_since(tmp_path: Path) -> None:
    store = RowStore(tmp_path / "db", W)
    cache = CachedEmbeddings(
        store, lambda ids: np.full((len(ids), W), 0.5, np.float32), 8, slot_index=SlotMap
    )
    cache.observe(1_000)
    old = torch.tensor([1, 2, 3])
    cache.update(old, cache.lookup(old) + 1)
    cache.flush({"p": 1})
    cache.observe(9_000)
    touched = torch.tensor([3])
    cache.update(touched, cache.lookup(touched) + 1)  # not flushed: the store still says 1_000

    eviction = cache.evict(expire_before=5_000, max_rows=None)
    assert sorted(eviction.ids.tolist()) == [1, 2, 3]
    # A deleted clean row is gone from the cache too: it reads as a new row again.
    np.testing.assert_array_equal(
        cache.lookup(torch.tensor([1]), create=False).numpy(), [[0.5, 0.5]]
    )
    cache.flush({"p": 2})
    rows, found = store.get(np.array([1, 2, 3]))
    assert found.tolist() == [False, False, True]  # the touched row was written back
    np.testing.assert_array_equal(rows[2], [2.5, 2.5])
    store.close()


def test_a_read_caching_snapshot_serves_rows_without_writing_or_stamping(tmp_path: Path) -> None:
    live = RowStore(tmp_path / "live", W)
    live.write(
        np.array([1, 2]), np.array([[1, 1], [2, 2]], np.float32), {"p": 1}, seen=np.array([5, 5])
    )
    live.checkpoint(tmp_path / "snap")
    live.close()
    snap = RowStore(tmp_path / "snap", W, read_only=True)
    cache = CachedEmbeddings(
        snap,
        lambda ids: np.full((len(ids), W), 9.0, np.float32),
        4,
        cache_reads=True,
        slot_index=SlotMap,
    )
    for _ in range(2):  # the second time from the slab
        rows = cache.lookup(torch.tensor([1, 2, 3]), create=False).numpy()
        np.testing.assert_array_equal(rows, [[1, 1], [2, 2], [9, 9]])
    # The stored rows are cached on the first read; the unseen id 3 never is (its row
    # is its initial value), so a stream of new ids cannot fill a snapshot's cache.
    assert cache.hits == 2 and cache.misses == 4
    records, _ = snap.get_records(np.array([1, 2]))
    assert records["count"].tolist() == [0, 0] and records["seen"].tolist() == [5, 5]
    snap.close()
