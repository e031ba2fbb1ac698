"""Snapshot checksums, and the digests a scorer remembers between snapshots."""

from __future__ import annotations

import os
from pathlib import Path

from deploy.apps.train.publish import Verified, checksums


def test_a_remembered_file_is_not_reread_and_a_changed_one_is(tmp_path: Path) -> None:
    first, second = tmp_path / "1", tmp_path / "2"
    (first / "rows").mkdir(parents=True)
    (first / "rows" / "000001.sst").write_bytes(b"a" * 1000)
    (first / "dense.pt").write_bytes(b"weights")
    known: Verified = {}
    before = checksums(first, known)
    assert len(known) == 2

    (second / "rows").mkdir(parents=True)
    os.link(first / "rows" / "000001.sst", second / "rows" / "000001.sst")  # as a checkpoint
    (second / "dense.pt").write_bytes(b"other weights")
    # A remembered digest stands for the linked file: a stale one shows it was not reread.
    st = (first / "rows" / "000001.sst").stat()
    known[(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)] = "remembered"
    after = checksums(second, known)
    assert after["rows/000001.sst"] == "remembered"
    assert after["dense.pt"] != before["dense.pt"]
    assert len(known) == 2  # this snapshot's files only

    with (second / "rows" / "000001.sst").open("r+b") as f:  # changed in place: reread
        f.write(b"b")
    os.utime(second / "rows" / "000001.sst", ns=(1, 1))
    assert checksums(second, known)["rows/000001.sst"] == checksums(second)["rows/000001.sst"]
    assert checksums(second, known)["rows/000001.sst"] != before["rows/000001.sst"]
