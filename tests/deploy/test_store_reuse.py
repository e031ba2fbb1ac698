"""Runs sharing a store directory: a store another process has open is never deleted,
and rows left by an earlier run are never reused silently."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from store.claim import stored_rows

FMSTREAM = str(Path(sys.executable).with_name("fmstream"))
SMALL = ["--days", "2", "--users", "500", "--items", "100", "--models", "lr", "--store", "rocksdb"]


def _demo(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [FMSTREAM, "demo", *SMALL, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_store_in_use_by_another_run_is_refused_not_deleted(tmp_path: Path) -> None:
    first = _demo("--impressions-per-day", "150000", "--store-dir", str(tmp_path / "store"))
    opened = tmp_path / "store" / "lr" / "CURRENT"
    deadline = time.monotonic() + 120
    while not opened.exists():
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the first run never opened its store"
        time.sleep(0.2)
    # Its default store is the first run's explicit one: the second run must not touch it.
    second = _demo("--impressions-per-day", "2000", "--out", str(tmp_path))
    out, err = second.communicate(timeout=120)
    assert first.poll() is None, "the second run should try while the first holds the store"
    assert second.returncode == 1, (out, err)
    assert "is open in another process" in err
    assert err.count("\n") <= 2  # one line, not a traceback
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert stored_rows(tmp_path / "store") > 0  # still opens, rows intact


def test_an_explicit_store_with_rows_needs_resume_or_fresh(tmp_path: Path) -> None:
    store = ["--impressions-per-day", "3000", "--store-dir", str(tmp_path / "store")]
    out = ["--out", str(tmp_path / "out")]
    first = _demo(*store, *out)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    rows = stored_rows(tmp_path / "store")
    assert rows > 0

    again = _demo(*store, *out)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 1
    assert f"holds {rows} rows from an earlier run: pass --resume" in err

    resumed = _demo(*store, *out, "--resume")
    stdout, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"continuing from {rows} rows" in stdout
    assert stored_rows(tmp_path / "store") >= rows

    fresh = _demo(*store, *out, "--fresh")
    _, err = fresh.communicate(timeout=300)
    assert fresh.returncode == 0, err
    assert 0 < stored_rows(tmp_path / "store") <= rows
