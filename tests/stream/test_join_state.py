"""The join's local state: a corrupt one is an error that says how to recover."""

from __future__ import annotations

from pathlib import Path

import pytest
from rocksdict import Options, Rdict

from stream.errors import JoinStateError
from stream.join.core import PENDING, JoinConfig, JoinerCore
from stream.join.state import JoinState, _meta_key, _prefix


def _corrupt(path: Path, key: bytes) -> None:
    db = Rdict(str(path), options=Options(raw_mode=True))
    db[key] = b"{not json"
    db.close()


def test_corrupt_progress_says_to_delete_the_state_dir(tmp_path: Path) -> None:
    JoinState(tmp_path).close()
    _corrupt(tmp_path, _meta_key(0))
    state = JoinState(tmp_path)
    try:
        with pytest.raises(JoinStateError, match="delete this --state-dir; the next start"):
            state.progress(0)
    finally:
        state.close()


def test_a_corrupt_pending_impression_says_the_same(tmp_path: Path) -> None:
    JoinState(tmp_path).close()
    _corrupt(tmp_path, _prefix(0) + PENDING.encode() + b"i1")
    state = JoinState(tmp_path)
    try:
        with pytest.raises(JoinStateError, match=r"partition 0 .* is unreadable"):
            state.load_into(0, JoinerCore(JoinConfig()), (None, None))
    finally:
        state.close()
