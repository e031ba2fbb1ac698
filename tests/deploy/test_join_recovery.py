"""Bounded recovery: a partition rebuilt from its newest checkpoint equals one rebuilt
from its whole changelog, also when the newest checkpoint was cut short, and
recovery refuses a changelog that retention has cut under its checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from deploy.apps.join.clients import open_io
from deploy.apps.join.daemon import JoinDaemon
from deploy.apps.join.recovery import Recovered, recover, start_offset
from deploy.local.broker import EmbeddedBroker
from deploy.settings.tables import TopicSettings
from stream.errors import JoinStateError
from stream.events import CLICKS, IMPRESSIONS
from stream.join.checkpoint import ChangelogTail, chunks
from stream.join.core import JoinConfig
from stream.join.records import InRecord
from stream.join.state import JoinState
from stream.join.task import TaskConfig
from stream.kafka.join_io import JoinIO
from tests.joinkit import T0, Inputs, daemon, run_until

CONFIG = JoinConfig(window_ms=10_000, allowed_lateness_ms=1_000, orphan_grace_ms=2_000)


def _stream_rounds(broker: EmbeddedBroker, topics: TopicSettings, state: Path) -> None:
    """Eight rounds of traffic through a daemon that checkpoints every 3 records of
    the changelog; impressions, clicks, waiting clicks and open windows remain."""
    send = Inputs(broker.client_options, topics)
    d = daemon(
        broker.client_options, topics, state, max_poll_records=15, state_checkpoint_interval=3
    )
    try:
        for r in range(8):
            base = T0 + r * 4_000
            for i in range(30):
                send.impression(f"r{r}i{i}", base + i * 100)
            for i in range(0, 30, 4):
                send.click(f"r{r}i{i}", base + i * 100 + 50)
            send.click(f"early{r}", base + 3_000)  # its impression comes next round
            send.impression(f"early{r - 1}", base + 10)
            send.flush()
            run_until(d, _has_read(d, 31 * (r + 1)))
    finally:
        d.close()
        send.close()


def _has_read(d: JoinDaemon, impressions: int) -> Callable[[], bool]:
    return lambda: sum(t.consumed[IMPRESSIONS] for t in d.tasks.values()) == impressions


def _recover(io: JoinIO, topics: TopicSettings, path: Path, use_checkpoints: bool) -> Recovered:
    state = JoinState(path)
    try:
        sources = {IMPRESSIONS: topics.impressions, CLICKS: topics.clicks}
        config = TaskConfig(CONFIG, 64 * 1024, labeled_batch_max=4)
        return recover(io, state, 0, config, sources, use_checkpoints)
    finally:
        state.close()


def _same_task(a: Recovered, b: Recovered) -> None:
    key = lambda row: (row[0], row[1])  # noqa: E731
    assert sorted(a.task.core.rows(), key=key) == sorted(b.task.core.rows(), key=key)
    assert a.task.progress() == b.task.progress()
    more = [
        InRecord(CLICKS, 0, 10_000, None, f'{{"id":"r7i{i}","ts":{T0 + 28_000 + i}}}'.encode(), -1)
        for i in range(1, 30, 2)
    ]
    closer = f'{{"id":"closer","ts":{T0 + 90_000},"features":{{}}}}'.encode()
    more += [InRecord(IMPRESSIONS, 0, 10_000, None, closer, -1)]
    more += [InRecord(CLICKS, 0, 10_001, None, f'{{"id":"c","ts":{T0 + 90_000}}}'.encode(), -1)]
    outs = [t.entry(t.process(more)) for t in (a.task, b.task)]
    assert outs[0] == outs[1]
    assert len(outs[0].outbox) > 0 and outs[0].changes


def test_recovery_from_a_checkpoint_equals_recovery_from_the_whole_history(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    topics = make_topics(1)
    _stream_rounds(broker, topics, tmp_path / "daemon")
    io = open_io(broker.client_options, topics, "recovery-test")
    try:
        tail = io.tail(0)
        assert tail.base > 0, "the daemon should have written checkpoints"
        via_checkpoint = _recover(io, topics, tmp_path / "a", use_checkpoints=True)
        via_history = _recover(io, topics, tmp_path / "b", use_checkpoints=False)
        assert (via_checkpoint.start, via_history.start) == (tail.base, 0)
        assert via_checkpoint.records <= 3 + 2 + 2  # the interval, a chunk and its mark
        assert via_history.records == len(list(io.changelog(0, 0))) > 5 * via_checkpoint.records
        assert via_checkpoint.task.core.pending > 0
        _same_task(via_checkpoint, via_history)

        # A checkpoint cut short (its chunks landed, the mark never did) is passed over.
        cut = _recover(io, topics, tmp_path / "c", use_checkpoints=False)
        io.append(0, chunks(0, cut.task.core.rows(), base=tail.base))
        assert io.tail(0).base == tail.base
        after_cut = _recover(io, topics, tmp_path / "d", use_checkpoints=True)
        assert after_cut.start == tail.base
        _same_task(after_cut, _recover(io, topics, tmp_path / "e", use_checkpoints=False))
    finally:
        io.close()


def test_a_changelog_cut_by_retention_under_its_state_is_refused(tmp_path: Path) -> None:
    state = JoinState(tmp_path)
    try:
        refused = r"retention.ms well above join.state_checkpoint_interval_s"
        with pytest.raises(JoinStateError, match=refused):
            start_offset(state, 0, ChangelogTail(first=100, end=200, base=50), use_checkpoints=True)
        with pytest.raises(JoinStateError, match="starts at offset 100"):
            start_offset(state, 0, ChangelogTail(first=100, end=200, base=-1), use_checkpoints=True)
        assert start_offset(state, 0, ChangelogTail(first=100, end=200, base=150), True) == 150
        assert start_offset(state, 0, ChangelogTail(first=0, end=0, base=-1), True) == 0
    finally:
        state.close()
