"""The RocksDB row store on a real RocksDB: persistence, atomicity, snapshots, errors."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from store.errors import StoreError, StoreFullError, StoreSchemaError
from store.rocksdb_options import RocksOptions
from store.row_store import RowStore

W = 6


def _rows(n: int, value: float) -> np.ndarray:
    return np.full((n, W), value, dtype=np.float32)


def test_rows_and_position_survive_reopening(tmp_path: Path) -> None:
    ids = np.array([5, -1, 2**63 - 1, -(2**63)], dtype=np.int64)
    store = RowStore(tmp_path / "db", W)
    store.write(ids, np.arange(4 * W, dtype=np.float32).reshape(4, W), {"impressions/0": 41})
    store.close()
    again = RowStore(tmp_path / "db", W)
    rows, found = again.get(np.array([-1, 99, 5], dtype=np.int64))
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(rows[0], np.arange(W, 2 * W))
    np.testing.assert_array_equal(rows[1], np.zeros(W))
    assert again.position() == {"impressions/0": 41}
    assert again.count() == 4
    again.close()


def test_another_row_width_is_refused_naming_the_path(tmp_path: Path) -> None:
    RowStore(tmp_path / "db", W).close()
    with pytest.raises(StoreSchemaError) as info:
        RowStore(tmp_path / "db", W + 1)
    message = str(info.value)
    assert (
        str(tmp_path / "db") in message and f"width {W}" in message and f"width {W + 1}" in message
    )


def test_a_store_open_elsewhere_is_a_clear_error(tmp_path: Path) -> None:
    first = RowStore(tmp_path / "db", W)
    code = (
        "import pathlib; from store.row_store import RowStore; "
        f"RowStore(pathlib.Path({str(tmp_path / 'db')!r}), {W})"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "StoreLockedError" in result.stderr
    assert "is open in another process" in result.stderr
    first.close()


def test_garbage_in_the_directory_is_not_silently_reinitialized(tmp_path: Path) -> None:
    path = tmp_path / "db"
    RowStore(path, W).close()
    for f in path.glob("*.log"):
        f.write_bytes(b"\xff" * 64)
    (path / "CURRENT").write_text("MANIFEST-999999\n")
    with pytest.raises(StoreError, match=f"cannot open the store at {path}"):
        RowStore(path, W)


def test_checkpoint_is_isolated_from_later_writes_and_opens_read_only(tmp_path: Path) -> None:
    store = RowStore(tmp_path / "db", W)
    ids = np.array([1, 2], dtype=np.int64)
    store.write(ids, _rows(2, 1.0), {"step": 1})
    store.checkpoint(tmp_path / "snap")
    store.write(ids, _rows(2, 2.0), {"step": 2})
    store.write(np.array([3]), _rows(1, 2.0))
    snap = RowStore(tmp_path / "snap", W, read_only=True)
    rows, found = snap.get(np.array([1, 2, 3]))
    assert found.tolist() == [True, True, False]
    assert (rows[:2] == 1.0).all() and snap.position() == {"step": 1}
    with pytest.raises(StoreError, match="already exists"):
        store.checkpoint(tmp_path / "snap")
    snap.close()
    store.close()


def test_rows_of_the_wrong_shape_are_refused(tmp_path: Path) -> None:
    store = RowStore(tmp_path / "db", W)
    with pytest.raises(StoreError, match="do not fit 2 ids of width 6"):
        store.write(np.array([1, 2]), np.zeros((2, W + 1), dtype=np.float32))
    store.close()


_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from pathlib import Path
    from store.row_store import RowStore
    store = RowStore(Path(sys.argv[1]), 6)
    ids = np.arange(2000, dtype=np.int64)
    start = (store.position() or {"step": 0})["step"]
    print("ready", flush=True)
    for step in range(start + 1, start + 100000):
        # weights and optimizer state of every row carry the step that wrote them
        store.write(ids, np.full((len(ids), 6), step, dtype=np.float32), {"step": step})
    """
)


def test_kill_9_at_random_moments_leaves_rows_matching_the_recorded_position(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db"
    rng = random.Random(7)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    last = 0
    for _ in range(10):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)], env=env, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = RowStore(path, W)
        position = store.position()
        rows, found = store.get(np.arange(2000, dtype=np.int64))
        store.close()
        if position is None:  # killed before its first write landed
            assert not found.any()
            continue
        step = position["step"]
        # Every row holds exactly the state written with the recorded position.
        assert found.all() and (rows == step).all(), (step, np.unique(rows))
        assert step >= last
        last = step
    assert last > 0


def test_writes_faster_than_flushes_wait_out_the_stalls_and_all_land(tmp_path: Path) -> None:
    # A 1 MiB write buffer and ~0.5 MiB batches: RocksDB stops writes while memtables
    # wait for their flush many times over; every row and the last position must land.
    store = RowStore(tmp_path / "db", W, RocksOptions(write_buffer_mb=1, block_cache_mb=1))
    rng = np.random.default_rng(0)
    steps, n = 40, 20_000
    last = np.empty((0, W), dtype=np.float32)
    for step in range(steps):
        last = rng.random((n, W), dtype=np.float32)
        store.write(np.arange(step * n, (step + 1) * n, dtype=np.int64), last, {"step": step})
    assert store.count() == steps * n
    assert store.position() == {"step": steps - 1}
    rows, found = store.get(np.arange((steps - 1) * n, steps * n, dtype=np.int64))
    assert found.all()
    np.testing.assert_array_equal(rows, last)
    store.close()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root and mount rights, as CI and the dev machines have)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_a_clear_error_and_loses_nothing_recorded(tiny_disk: Path) -> None:
    store = RowStore(tiny_disk / "db", W, RocksOptions(write_buffer_mb=1, block_cache_mb=1))
    rng = np.random.default_rng(0)
    last_good = None
    with pytest.raises(StoreFullError) as info:
        for step in range(1, 1000):
            ids = np.arange(step * 10_000, (step + 1) * 10_000, dtype=np.int64)
            store.write(ids, rng.random((10_000, W), dtype=np.float32), {"step": step})
            last_good = step
    message = str(info.value)
    assert f"the disk under {tiny_disk / 'db'} is full" in message
    assert f"still holds position {{'step': {last_good}}}" in message
    assert store.position() == {"step": last_good}


def test_stores_of_one_process_share_one_bounded_rocksdb_budget(tmp_path: Path) -> None:
    options = RocksOptions(block_cache_mb=4, memtables_mb=2, write_buffer_mb=1)
    ids = np.arange(100_000, dtype=np.int64)
    stores = [RowStore(tmp_path / f"model{i}", W, options) for i in range(3)]
    for i, store in enumerate(stores):
        store.write(ids, _rows(len(ids), float(i)), {"offset": i})
        store.checkpoint(tmp_path / f"snap{i}")  # flushes the memtable into a table file
    snapshots = [RowStore(tmp_path / f"snap{i}", W, options, read_only=True) for i in range(3)]
    for i, store in enumerate(stores + snapshots):
        rows, found = store.get(ids)  # 3 x 100k rows of 40 bytes: more than the budget
        assert found.all() and rows[0, 0] == i % 3
    usage = [s.memory() for s in stores + snapshots]
    assert {u["block_cache_capacity"] for u in usage} == {4 << 20}
    # One cache for all six: each reports the same usage, within the one budget.
    assert len({u["block_cache_bytes"] for u in usage}) == 1
    assert 0 < usage[0]["block_cache_bytes"] <= 4 << 20
    for store in stores + snapshots:
        store.close()


def test_an_ingested_batch_reads_back_like_a_written_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    ids = rng.integers(-(2**62), 2**62, 5_000)
    rows = rng.random((len(ids), 4), dtype=np.float32)
    counts, seen = rng.integers(1, 9, len(ids)), rng.integers(0, 10**12, len(ids))
    written, ingested = RowStore(tmp_path / "w", 4), RowStore(tmp_path / "i", 4)
    for store in (written, ingested):  # an older value of some ids, to be replaced
        store.write(ids[:100], np.zeros((100, 4), np.float32), {"at": 1})
    written.write(ids, rows, {"at": 2}, counts, seen, extras={"x": b"1"})
    ingested.ingest(ids, rows, {"at": 2}, counts, seen, extras={"x": b"1"})
    probe = np.concatenate([ids, [7]])
    np.testing.assert_array_equal(ingested.get_records(probe)[0], written.get_records(probe)[0])
    assert ingested.position() == {"at": 2} and ingested.extra("x") == b"1"
    assert np.array_equal(ingested.changed_ids(), written.changed_ids())
    with pytest.raises(StoreError, match="not distinct"):
        ingested.ingest(ids[:2].repeat(2), rows[:4], {"at": 3}, counts[:4], seen[:4])
    assert ingested.position() == {"at": 2}
    written.close()
    ingested.close()
