"""Checkpoint records in the join changelog, and rebuilding a partition from one."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.errors import RecordError
from stream.events import Click, Impression
from stream.join.checkpoint import CHUNK_BYTES, Chunk, Mark, chunks, decode_changelog
from stream.join.core import JoinConfig, JoinerCore
from stream.join.records import Entry, Progress
from stream.join.state import JoinState

T0 = 1_700_000_000_000


def _busy_core() -> JoinerCore:
    """A core with every kind of state: pending, waiting clicks, labeled ids (one
    with its late click reported)."""
    core = JoinerCore(JoinConfig(window_ms=10_000, allowed_lateness_ms=0), journal=True)
    core.impression(Impression("late", T0, {"f": "x"}))
    core.click(Click("late", T0 + 1))
    for i in range(50):
        core.impression(Impression(f"i{i}", T0 + 1_000 + i, {"user": f"u{i}", "n": i}))
    core.click(Click("waits", T0 + 1_100))
    core.click(Click("i3", T0 + 1_200))
    core.impression(Impression("later", T0 + 12_000, {}))
    core.click(Click("x", T0 + 12_000))  # closes the first window
    core.click(Click("late", T0 + 12_001))  # now late: reported once
    core.take_changes()
    return core


def _restored(state: JoinState, times: tuple[int | None, int | None]) -> JoinerCore:
    core = JoinerCore(JoinConfig(window_ms=10_000, allowed_lateness_ms=0))
    state.load_into(0, core, times)
    return core


def test_chunks_rebuild_exactly_the_state_after_a_reset(tmp_path: Path) -> None:
    core = _busy_core()
    rows = core.rows()
    assert {kind for kind, _, _ in rows} == {"P", "W", "D"}
    state = JoinState(tmp_path)
    try:
        stale = Entry(1, Progress(), [("P", "gone", Impression("gone", T0, {}))], [])
        state.apply([(Entry(0, Progress(), [("W", "gone", T0)], []), 0), (stale, 1)])
        state.reset(0)
        assert state.progress(0) is None
        records = [decode_changelog(raw, "t") for raw in chunks(0, rows, base=-1)]
        mark = Mark(0, Progress({"impressions": 53}, core.event_times, 7, {}, base=10), 1)
        state.apply([(records[0], 10), (mark, 11)])
        again = _restored(state, core.event_times)
        assert sorted(again.rows(), key=_key) == sorted(rows, key=_key)
        assert state.progress(0) == (mark.progress, 12)
        assert state.progress(1) is not None  # another partition's state is left alone
    finally:
        state.close()


def _key(row: tuple[str, str, object]) -> tuple[str, str]:
    return row[0], row[1]


def test_a_large_state_is_cut_into_chunks_below_the_limit() -> None:
    big = [("P", f"i{i}", Impression(f"i{i}", T0, {"blob": "x" * 2_000})) for i in range(600)]
    raws = chunks(3, big, base=41)
    assert len(raws) >= 3
    assert all(len(raw) <= CHUNK_BYTES + 4_096 for raw in raws)
    decoded = [decode_changelog(raw, "t") for raw in raws]
    assert all(isinstance(c, Chunk) and c.partition == 3 and c.base == 41 for c in decoded)
    assert [row for c in decoded if isinstance(c, Chunk) for row in c.changes] == big


def test_an_empty_state_is_one_empty_chunk_and_a_mark_survives_its_encoding() -> None:
    [raw] = chunks(0, [], base=-1)
    assert decode_changelog(raw, "t") == Chunk(0, [], -1)
    mark = Mark(2, Progress({"clicks": 4}, (T0, None), 9, {"labeled:2": 5}, base=30), 4)
    assert decode_changelog(mark.encode(), "t") == mark


def test_entries_still_decode_and_a_bad_record_names_where_it_is() -> None:
    entry = Entry(0, Progress({"impressions": 1}, (T0, None), 1, {}, base=7), [], [])
    assert decode_changelog(entry.encode(), "t") == entry
    for raw in (b"{nope", b'{"v": 1, "kind": "checkpoint", "p": 0}', b'{"kind": "mystery"}'):
        with pytest.raises(RecordError, match=r"changelog record at cl\[0\]@5"):
            decode_changelog(raw, "cl[0]@5")


def test_progress_without_a_base_reads_as_none_yet() -> None:
    obj = Progress({"impressions": 3}, (T0, T0), 2, {}).to_json()
    del obj["base"]
    assert Progress.from_json(obj).base == -1
