"""Zombie fencing in one process: once another instance has claimed a partition, the
old owner's next write is refused by the broker, nothing of it lands, and the old
owner drops its tasks until a rebalance (or the fallback wait) gives them back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prometheus_client import generate_latest

from deploy.apps.join.clients import open_io
from deploy.local.broker import EmbeddedBroker
from deploy.settings.tables import TopicSettings
from tests.joinkit import T0, FakeClock, Inputs, daemon, labels_of, read_all, run_until


def test_a_fenced_instance_writes_nothing_and_resumes_only_when_it_may(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    topics = make_topics(1)
    options = broker.client_options
    send = Inputs(options, topics)
    clock = FakeClock()
    a = daemon(options, topics, tmp_path / "a", clock=clock)
    thief = open_io(options, topics, f"g-{topics.impressions}")  # the group's ids
    try:
        for i in range(10):
            send.impression(f"i{i}", T0 + i)
        send.flush()
        run_until(a, lambda: bool(a.tasks) and a.tasks[0].core.pending == 10)
        before = (len(list(thief.changelog(0, 0))), len(read_all(options, topics.labeled)))

        thief.claim(0)  # another instance took the partition over
        for i in range(0, 10, 2):
            send.click(f"i{i}", T0 + i + 100)
        send.flush()
        run_until(a, lambda: not a.tasks)  # its next write was refused: tasks dropped
        after = (len(list(thief.changelog(0, 0))), len(read_all(options, topics.labeled)))
        assert after == before, "the fenced instance must not have written anything"
        assert "fmstream_join_fenced_total 1.0" in generate_latest(a._metrics.registry).decode()
        for _ in range(5):
            a.step()
        assert not a.tasks, "without a rebalance it waits before claiming again"

        clock.now += 61  # no rebalance came: it claims the partition back and goes on
        send.impression("closer", T0 + 60_000)
        send.click("closer-click", T0 + 60_000)
        send.flush()
        run_until(a, lambda: bool(a.tasks) and a.tasks[0].core.stats.labels_negative >= 5)
    finally:
        a.close()
        thief.close()
        send.close()
    labels = labels_of(read_all(options, topics.labeled))
    assert labels == {f"i{i}": [1 - i % 2] for i in range(10)}
