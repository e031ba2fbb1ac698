from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from store.errors import StoreError
from store.row_store import RowStore
from store.snapshots import Snapshots

W = 2


def test_create_list_open_and_prune(tmp_path: Path) -> None:
    store = RowStore(tmp_path / "live", W)
    snaps = Snapshots(tmp_path / "snaps")
    for version in (1, 2, 3):
        store.write(np.array([7]), np.full((1, W), version, dtype=np.float32), {"v": version})
        snaps.create(store, version)
    (tmp_path / "snaps" / ".000000000004.partial").mkdir()  # a crash mid-snapshot
    assert snaps.versions() == [1, 2, 3]
    old = snaps.open(1, W)
    assert old.get(np.array([7]))[0].tolist() == [[1.0, 1.0]]
    assert old.position() == {"v": 1}
    old.close()
    assert snaps.prune(keep=2) == [1]
    assert snaps.versions() == [2, 3]
    assert not list((tmp_path / "snaps").glob(".*"))
    with pytest.raises(StoreError, match=r"no snapshot 1 under .*; have \[2, 3\]"):
        snaps.open(1, W)
    with pytest.raises(StoreError, match="snapshot 3 already exists"):
        snaps.create(store, 3)
    store.close()
