from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from store.delta import apply_delta, export_delta
from store.errors import StoreSchemaError
from store.row_store import RowStore

W = 4


def _all_rows(store: RowStore, ids: np.ndarray) -> np.ndarray:
    rows, found = store.get(ids)
    return np.where(found[:, None], rows, np.nan)


def test_previous_snapshot_plus_delta_equals_a_full_snapshot(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ids = np.arange(-500, 500, dtype=np.int64)
    store = RowStore(tmp_path / "live", W)
    store.write(ids, rng.random((len(ids), W), dtype=np.float32), {"offset": 10})
    store.checkpoint(tmp_path / "snap1")
    changed = rng.choice(ids, 120, replace=False)
    new_ids = np.array([10_000, 10_001], dtype=np.int64)
    store.write(changed, rng.random((len(changed), W), dtype=np.float32), {"offset": 15})
    store.write(new_ids, np.ones((2, W), dtype=np.float32), {"offset": 20})
    assert set(store.changed_ids().tolist()) == set(changed.tolist()) | {10_000, 10_001}

    assert export_delta(store, tmp_path / "delta.npz") == 122
    store.checkpoint(tmp_path / "snap2")
    assert len(store.changed_ids()) == 0  # the next delta starts at snap2
    store.close()

    shutil.copytree(tmp_path / "snap1", tmp_path / "rebuilt")
    rebuilt = RowStore(tmp_path / "rebuilt", W)
    assert apply_delta(rebuilt, tmp_path / "delta.npz") == 122
    full = RowStore(tmp_path / "snap2", W, read_only=True)
    every = np.concatenate([ids, new_ids, np.array([777_777])])
    np.testing.assert_array_equal(_all_rows(rebuilt, every), _all_rows(full, every))
    assert rebuilt.position() == full.position() == {"offset": 20}
    rebuilt.close()
    full.close()


def test_a_delta_carries_evicted_rows_as_deletions(tmp_path: Path) -> None:
    ids = np.arange(10, dtype=np.int64)
    seen = np.where(ids < 4, 100, 900)
    store = RowStore(tmp_path / "live", W)
    store.write(ids, np.ones((10, W), dtype=np.float32), {"o": 1}, seen=seen)
    store.checkpoint(tmp_path / "snap1")
    store.evict(expire_before=500, max_rows=None)
    store.write(np.array([7]), np.full((1, W), 3.0, np.float32), {"o": 2})
    assert export_delta(store, tmp_path / "d.npz") == 5  # 4 deleted + 1 written
    store.checkpoint(tmp_path / "snap2")
    store.close()

    shutil.copytree(tmp_path / "snap1", tmp_path / "rebuilt")
    rebuilt = RowStore(tmp_path / "rebuilt", W)
    assert apply_delta(rebuilt, tmp_path / "d.npz") == 5
    full = RowStore(tmp_path / "snap2", W, read_only=True)
    np.testing.assert_array_equal(_all_rows(rebuilt, ids), _all_rows(full, ids))
    assert rebuilt.get(ids)[1].tolist() == [False] * 4 + [True] * 6
    assert rebuilt.position() == {"o": 2}
    rebuilt.close()
    full.close()


def test_a_delta_of_another_width_is_refused(tmp_path: Path) -> None:
    store = RowStore(tmp_path / "a", W)
    store.write(np.array([1]), np.ones((1, W), dtype=np.float32), {"o": 1})
    export_delta(store, tmp_path / "d.npz")
    other = RowStore(tmp_path / "b", W + 2)
    with pytest.raises(StoreSchemaError, match="has rows of width 4"):
        apply_delta(other, tmp_path / "d.npz")
    store.close()
    other.close()


def test_a_delta_carries_the_changes_of_every_session_since_the_checkpoint(
    tmp_path: Path,
) -> None:
    store = RowStore(tmp_path / "live", W)
    store.write(np.array([1, 2]), np.ones((2, W), np.float32), {"offset": 1})
    store.checkpoint(tmp_path / "snap")
    store.write(np.array([3, 4]), np.ones((2, W), np.float32), {"offset": 2})
    store.close()
    # A restarted trainer appends to the change log; it must not overwrite it.
    store = RowStore(tmp_path / "live", W)
    store.write(np.array([4, -5]), np.full((2, W), 2.0, np.float32), {"offset": 3})
    assert store.changed_ids().tolist() == [-5, 3, 4]
    assert export_delta(store, tmp_path / "delta.npz") == 3
    store.close()
    rebuilt = RowStore(tmp_path / "snap", W)
    apply_delta(rebuilt, tmp_path / "delta.npz")
    np.testing.assert_array_equal(
        _all_rows(rebuilt, np.array([1, 3, 4, -5])),
        [[1.0] * W, [1.0] * W, [2.0] * W, [2.0] * W],
    )
    rebuilt.close()


def test_a_checkpoint_that_keeps_the_change_log_leaves_the_next_delta_whole(
    tmp_path: Path,
) -> None:
    store = RowStore(tmp_path / "live", W)
    store.write(np.arange(3, dtype=np.int64), np.ones((3, W), dtype=np.float32))
    store.checkpoint(tmp_path / "promoted", extras={"base": b"1"})
    store.write(np.array([7], dtype=np.int64), np.ones((1, W), dtype=np.float32))
    store.checkpoint(tmp_path / "refused", restart_changes=False, extras={"base": b"2"})
    store.write(np.array([8], dtype=np.int64), np.ones((1, W), dtype=np.float32))
    assert store.changed_ids().tolist() == [7, 8]  # both, since "promoted"
    assert store.extra("base") == b"1"
    store.close()
