"""The join daemon in-process against the real broker and a real RocksDB state."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from prometheus_client import generate_latest

from deploy.apps.join.daemon import JoinDaemon
from deploy.apps.join.recovery import JoinOutputs
from deploy.local.broker import EmbeddedBroker
from deploy.runtime.signals import StopRequested
from deploy.settings.tables import TopicSettings
from stream.errors import BrokerError
from stream.join.state import JoinState
from stream.kafka.admin import ensure_topics
from stream.kafka.options import ClientOptions
from tests.joinkit import (
    T0,
    FailingOutputs,
    FakeClock,
    Inputs,
    daemon,
    events_of,
    impressions_with_clicks,
    label_differences,
    labels_of,
    read_all,
    run_until,
)

W = 10_000  # the window of `daemon()`; lateness 1 s, orphan grace 2 s


def _labeled_count(broker: EmbeddedBroker, topics: TopicSettings) -> Callable[[], int]:
    return lambda: len(events_of(read_all(broker.client_options, topics.labeled, idle_ms=300)))


def test_window_edges_through_the_broker_and_an_idle_partition(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    topics = make_topics(1)
    clock = FakeClock()
    d = daemon(broker.client_options, topics, tmp_path / "s", idle_timeout_s=5, clock=clock)
    send = Inputs(broker.client_options, topics)
    send.impression("edge", T0)
    send.impression("late", T0 + 1)
    send.impression("quiet", T0 + 2)
    send.click("edge", T0 + W)  # exactly at the window's end: counts
    send.click("late", T0 + 1 + W + 1)  # 1 ms after: late, the label stays 0
    send.impression("now", T0 + 30_000)
    send.click("other", T0 + 30_000)  # moves the click input on: windows up to ~29 s close
    send.impression("reordered", T0 + 29_500)  # behind by less than the lateness
    send.click("reordered", T0 + 29_600)
    send.impression("too-late", T0 + 5_000)  # its window closed before it arrived
    send.flush()
    try:
        run_until(d, lambda: sum(t.core.stats.labels_negative for t in d.tasks.values()) >= 3)
        # "now" waits: nothing moves event time on while the partition is active...
        for _ in range(3):
            d.step()
        assert d.tasks[0].core.pending == 1
        # ...until both inputs have been quiet for the idle timeout.
        clock.now += 5 + W / 1000 + 2
        run_until(d, lambda: d.tasks[0].core.pending == 0)
    finally:
        d.close()
        send.close()
    labels = labels_of(read_all(broker.client_options, topics.labeled))
    assert labels == {
        "edge": [1],
        "late": [0],
        "quiet": [0],
        "reordered": [1],
        "too-late": [0],
        "now": [0],
    }
    corrections = [
        orjson.loads(r.value) for r in read_all(broker.client_options, topics.corrections)
    ]
    assert corrections == [{"id": "late", "ts": T0 + 1, "click_ts": T0 + W + 2}]


def test_an_input_still_being_read_is_behind_not_idle(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    # One record per poll and ten seconds of wall time per step: each input goes
    # "quiet" while the other one's fetched records are drained, though its own
    # records wait on the broker (as after a broker stall, or on a busy machine).
    topics = make_topics(1)
    clock = FakeClock()
    d = daemon(
        broker.client_options,
        topics,
        tmp_path / "s",
        idle_timeout_s=5,
        clock=clock,
        max_poll_records=1,
    )
    send = Inputs(broker.client_options, topics)
    n = 30
    for i in range(n):
        send.impression(f"i{i}", T0 + i)
    for i in range(0, n, 2):
        send.click(f"i{i}", T0 + i + 5)
    send.impression("closer", T0 + 6 * W)
    send.click("closer-click", T0 + 6 * W)
    send.flush()

    def step() -> bool:
        clock.now += 10
        return sum(t.core.stats.labels_negative for t in d.tasks.values()) >= n // 2

    try:
        run_until(d, step)
    finally:
        d.close()
        send.close()
    labels = labels_of(read_all(broker.client_options, topics.labeled))
    want = {f"i{i}": 1 - i % 2 for i in range(n)}
    assert label_differences(labels, want) == {}
    assert read_all(broker.client_options, topics.corrections) == []


def test_restart_keeps_pending_impressions_and_emits_each_label_once(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    topics = make_topics(2)
    send = Inputs(broker.client_options, topics)
    for i in range(40):
        send.impression(f"i{i}", T0 + i * 100, partition=i % 2)
    send.flush()
    first = daemon(broker.client_options, topics, tmp_path / "s")
    run_until(first, lambda: sum(t.core.pending for t in first.tasks.values()) == 40)
    first.close()

    for i in range(0, 40, 4):
        send.click(f"i{i}", T0 + i * 100 + 50, partition=i % 2)
    send.impression("closer", T0 + 60_000, partition=0)
    send.impression("closer", T0 + 60_000, partition=1)
    send.click("x", T0 + 60_000, partition=0)
    send.click("x", T0 + 60_000, partition=1)
    send.flush()
    second = daemon(broker.client_options, topics, tmp_path / "s")
    try:
        run_until(
            second, lambda: sum(t.core.stats.labels_negative for t in second.tasks.values()) >= 30
        )
    finally:
        second.close()
        send.close()
    labels = labels_of(read_all(broker.client_options, topics.labeled))
    assert labels == {f"i{i}": [1 if i % 4 == 0 else 0] for i in range(40)}


# A cut send lands a share of the poll's records: example batches, or (batch max 1)
# one plain event per record.
@pytest.mark.parametrize(("keep", "batch_max"), [(0.0, 4), (0.5, 4), (0.5, 1)])
def test_a_batch_cut_short_after_its_changelog_entry_is_completed_on_recovery(
    broker: EmbeddedBroker,
    make_topics: Callable[[int], TopicSettings],
    tmp_path: Path,
    keep: float,
    batch_max: int,
) -> None:
    topics = make_topics(1)
    send = Inputs(broker.client_options, topics)
    impressions_with_clicks(send, 30, click_every=1)
    killed = KeyboardInterrupt("killed mid-send")
    doomed = daemon(
        broker.client_options,
        topics,
        tmp_path / "s",
        outputs=lambda real: FailingOutputs(real, keep, killed),
        labeled_batch_max=batch_max,
    )
    with pytest.raises(KeyboardInterrupt):
        run_until(doomed, lambda: False)
    doomed.close()
    landed = len(events_of(read_all(broker.client_options, topics.labeled, idle_ms=500)))
    assert landed < 30

    again = daemon(broker.client_options, topics, tmp_path / "s", labeled_batch_max=batch_max)
    try:
        run_until(again, lambda: bool(again.tasks))
        again.step()
    finally:
        again.close()
        send.close()
    labels = labels_of(read_all(broker.client_options, topics.labeled))
    assert labels == {f"i{i}": [1] for i in range(30)}


def test_a_failed_send_is_retried_through_recovery_without_loss_or_duplicates(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    topics = make_topics(1)
    send = Inputs(broker.client_options, topics)
    impressions_with_clicks(send, 50, click_every=1)
    send.close()
    timed_out = BrokerError("sending to the output topics timed out")
    flaky: list[FailingOutputs] = []

    def wrap(real: JoinOutputs) -> JoinOutputs:
        flaky.append(FailingOutputs(real, 0.5, timed_out))
        return flaky[0]

    d = daemon(broker.client_options, topics, tmp_path / "s", outputs=wrap, entered=False)
    run_until_labeled(d, broker.client_options, topics.labeled, 50)
    JoinState(tmp_path / "s").close()  # run() closed its parts: the state's lock is free
    d.close()  # a second close does nothing
    assert flaky[0].failed_with, "the send never failed: the test did not test anything"
    labels = labels_of(read_all(broker.client_options, topics.labeled))
    assert labels == {f"i{i}": [1] for i in range(50)}


def test_outputs_lost_in_flight_are_resent_though_a_checkpoint_was_due(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    """A batch's outputs are acknowledged while the next batch is joined. Lost on
    the way, they are resent by recovery, which completes only the last entry's
    outbox: so no checkpoint (due after every record here) may follow that entry
    before they have landed."""
    topics = make_topics(1)
    send = Inputs(broker.client_options, topics)
    impressions_with_clicks(send, 40, click_every=1)
    send.close()
    flaky: list[FailingOutputs] = []

    def wrap(real: JoinOutputs) -> JoinOutputs:
        flaky.append(FailingOutputs(real, 0.5, BrokerError("lost in flight"), in_flight=True))
        return flaky[0]

    d = daemon(
        broker.client_options,
        topics,
        tmp_path / "s",
        outputs=wrap,
        entered=False,
        max_poll_records=10,
        state_checkpoint_interval=1,
    )
    run_until_labeled(d, broker.client_options, topics.labeled, 40)
    assert flaky[0].failed_with, "no send was lost: the test did not test anything"
    labels = labels_of(read_all(broker.client_options, topics.labeled))
    assert labels == {f"i{i}": [1] for i in range(40)}


def run_until_labeled(d: JoinDaemon, options: ClientOptions, topic: str, n: int) -> None:
    """Runs the daemon on a thread (its own loop: backoff, recovery) until `n` labeled
    events are in `topic` or 30 s have passed, then stops it."""
    stop = StopRequested()
    worker = threading.Thread(target=d.run, args=(stop,))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(events_of(read_all(options, topic, 300))) < n:
            time.sleep(0.5)
    finally:
        stop.set()
        worker.join(timeout=30)


def test_a_partition_moved_to_an_instance_without_its_state_resumes_from_the_changelog(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    topics = make_topics(1)
    send = Inputs(broker.client_options, topics)
    for i in range(20):
        send.impression(f"i{i}", T0 + i)
    send.flush()
    a = daemon(broker.client_options, topics, tmp_path / "a")
    run_until(a, lambda: bool(a.tasks) and a.tasks[0].core.pending == 20)
    a.close()
    for i in range(0, 20, 2):
        send.click(f"i{i}", T0 + i + 100)
    send.impression("closer", T0 + 60_000)
    send.click("closer-click", T0 + 60_000)
    send.flush()
    b = daemon(broker.client_options, topics, tmp_path / "b")  # another machine's empty state
    try:
        run_until(b, lambda: bool(b.tasks) and b.tasks[0].core.stats.labels_negative >= 10)
    finally:
        b.close()
        send.close()
    labels = labels_of(read_all(broker.client_options, topics.labeled))
    assert labels == {f"i{i}": [1 - i % 2] for i in range(20)}


def test_bad_records_are_dead_lettered_with_their_origin_and_counted(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    topics = make_topics(1)
    send = Inputs(broker.client_options, topics)
    bad = {
        "invalid_json": b"{not json",
        "missing_field": orjson.dumps({"ts": T0, "features": {}}),
        "wrong_type": orjson.dumps({"id": "w", "ts": "yesterday", "features": {}}),
        "oversize": orjson.dumps({"id": "o", "ts": T0, "features": {"f": "x" * 70_000}}),
        "ts_out_of_range": orjson.dumps({"id": "t", "ts": T0 + 400 * 86_400_000, "features": {}}),
    }
    send.impression("good", T0)
    for reason, value in bad.items():
        send.raw(topics.impressions, value, 0, reason, T0)
    send.raw(topics.clicks, b"\xff\xfe", 0, "binary", T0)
    send.click("good", T0 + 10)
    send.flush()
    d = daemon(broker.client_options, topics, tmp_path / "s")
    try:
        run_until(d, lambda: bool(d.tasks) and d.tasks[0].core.stats.labels_positive == 1)
        text = generate_latest(d._metrics.registry).decode()
    finally:
        d.close()
        send.close()
    dead = read_all(broker.client_options, topics.dead_letter)
    by_key = {r.key.decode(): (r.value, dict(r.headers)) for r in dead}
    assert set(by_key) == {*bad, "binary"}
    for reason, value in bad.items():
        original, headers = by_key[reason]
        assert original == value  # the original bytes, untouched
        assert headers["fmstream.error"].decode() == reason
        assert headers["fmstream.source.topic"].decode() == topics.impressions
        assert headers["fmstream.source.partition"] == b"0"
        assert int(headers["fmstream.source.offset"]) in range(1, 6)
    assert by_key["binary"][1]["fmstream.source.topic"].decode() == topics.clicks
    assert 'fmstream_join_dead_letters_total{reason="invalid_json"} 2.0' in text
    assert 'fmstream_join_labels_total{label="1"} 1.0' in text
    assert labels_of(read_all(broker.client_options, topics.labeled)) == {"good": [1]}


def test_inputs_with_different_partition_counts_are_refused(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    topics = make_topics(2)
    odd = TopicSettings(**{**topics.__dict__, "clicks": topics.clicks + "-3"})
    ensure_topics(broker.client_options, {odd.clicks: 3})
    with pytest.raises(BrokerError, match=r"has 2 partitions and .* 3: give them the same count"):
        daemon(broker.client_options, odd, tmp_path / "s")
