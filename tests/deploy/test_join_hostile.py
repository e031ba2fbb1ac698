"""The join daemon against input that once stopped it or corrupted its labels: null
values, traffic that starts after a long idle stretch, and a fuzz of hostile records."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from deploy.apps.join.daemon import JoinDaemon
from deploy.local.broker import EmbeddedBroker, free_port
from deploy.settings.tables import TopicSettings
from stream.errors import DEAD_LETTER_REASONS
from stream.events import DAY_MS
from stream.join.core import JoinConfig
from stream.simulate import SimulationConfig, Simulator
from tests import hostile
from tests.deploy.test_join_e2e import _env, _stop
from tests.joinkit import (
    T0,
    FakeClock,
    Inputs,
    daemon,
    events_of,
    label_differences,
    labels_of,
    offline_labels,
    read_all,
    run_until,
)

FMSTREAM = str(Path(sys.executable).with_name("fmstream"))


def _read_both(d: JoinDaemon) -> bool:
    return bool(d.tasks) and d.tasks[0].offsets.get("clicks", 0) >= 2


def test_null_values_are_dead_lettered_and_the_partition_moves_on(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    topics = make_topics(1)
    producer = KafkaProducer(**broker.client_options.producer())
    producer.send(topics.impressions, key=b"tomb-imp", value=None, partition=0)
    producer.send(topics.clicks, key=b"tomb-click", value=None, partition=0)
    producer.flush()
    producer.close()
    send = Inputs(broker.client_options, topics)
    send.impression("after", T0)
    send.click("after", T0 + 5)
    send.flush()
    send.close()
    for _ in range(2):  # and a restart does not trip over them again
        d = daemon(broker.client_options, topics, tmp_path / "s")
        try:
            run_until(d, partial(_read_both, d))
        finally:
            d.close()
    dead = read_all(broker.client_options, topics.dead_letter)
    assert sorted(r.key for r in dead) == [b"tomb-click", b"tomb-imp"]
    assert all(r.value is None for r in dead)
    assert {dict(r.headers)["fmstream.error"] for r in dead} == {b"null_value"}
    assert labels_of(read_all(broker.client_options, topics.labeled)) == {"after": [1]}


def test_an_idle_daemon_labels_a_later_backfill_like_the_offline_join(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    # Last month's traffic, produced now: broker timestamps are the wall clock, a
    # month after the events, as when a day is backfilled or replayed.
    month_ago = (int(time.time() * 1000) - 30 * DAY_MS) // DAY_MS * DAY_MS
    sim = SimulationConfig(
        seed=3,
        days=1,
        impressions_per_day=3_000,
        users=300,
        items=60,
        ctr=0.08,
        late_share=0.1,
        start_ms=month_ago,
    )
    topics = make_topics(2)
    clock = FakeClock()
    d = daemon(
        broker.client_options,
        topics,
        tmp_path / "s",
        join=JoinConfig(),  # the offline join's settings
        idle_timeout_s=5,
        clock=clock,
    )
    try:
        run_until(d, lambda: len(d.tasks) == 2)
        for _ in range(6):  # a minute of wall time without a record
            clock.now += 10
            d.step()
        send = Inputs(broker.client_options, topics)
        sent = 0
        for day in Simulator(sim).run():
            for r in day.records:
                send.raw(getattr(topics, r.topic), r.value, None, r.key.decode(), None)
                sent += 1
        send.flush()
        send.close()
        expected = offline_labels(sim)

        def step() -> bool:
            # About as fast as the real clock: an input is idle only once its fetches
            # have had time to come back empty. Offsets and the state (unlike a task's
            # counters) survive a rebalance, which a loaded machine may cause.
            clock.now += 0.2
            if sum(sum(t.offsets.values()) for t in d.tasks.values()) < sent:
                return False
            clock.now += 600  # traffic over: the idle rule closes the last windows
            return all(not t.core.pending and not t.labels_waiting for t in d.tasks.values())

        run_until(d, step, timeout_s=180)  # wall time: generous on a loaded machine
        dead = sum(sum(t.dead_letters.values()) for t in d.tasks.values())
    finally:
        d.close()
    got = labels_of(read_all(broker.client_options, topics.labeled))
    assert label_differences(got, expected) == {}
    assert dead == 0  # nothing judged too old
    assert sum(expected.values()) > 100


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_a_fuzz_of_hostile_records_is_all_accounted_for_and_the_daemon_lives(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    n = 3_000
    topics = make_topics(2)
    producer = KafkaProducer(**broker.client_options.producer(max_request_size=4 << 20))
    sent: Counter[str] = Counter()
    odd = hostile.keys_and_headers(2, n)
    for i, value in enumerate(hostile.values(1, n)):
        topic = topics.impressions if i % 3 else topics.clicks
        key, headers = next(odd)
        if value is None and key is None:  # Kafka needs one of them
            key = b"tombstone"
        producer.send(topic, key=key, value=value, headers=headers)
        sent[topic] += 1
        if i % 100 == 0:  # among them, well-formed pairs keyed by id: clicks that must join
            rid, ts = f"good{i}", T0 + 2 * 3_600_000 + i  # the newest yet: its window stays open
            imp = {"id": rid, "ts": ts, "features": {"ad": "a"}}
            producer.send(topics.impressions, key=rid.encode(), value=orjson.dumps(imp))
            click = {"id": rid, "ts": ts + 5}
            producer.send(topics.clicks, key=rid.encode(), value=orjson.dumps(click))
            sent[topics.impressions] += 1
            sent[topics.clicks] += 1
    for p in range(2):  # event time far past the valid records: every window closes
        closers: list[tuple[str, dict[str, object]]] = [
            (topics.impressions, {"id": f"closer-{p}", "ts": T0 + 5 * 3_600_000, "features": {}}),
            (topics.clicks, {"id": f"closer-click-{p}", "ts": T0 + 5 * 3_600_000}),
        ]
        for topic, closer in closers:
            producer.send(topic, value=orjson.dumps(closer), partition=p)
    producer.flush()
    producer.close()
    port = free_port()
    env = _env(broker, topics, FMSTREAM_JOIN_METRICS_PORT=str(port))
    joiner = subprocess.Popen(
        [FMSTREAM, "join", "--state-dir", str(tmp_path / "state")], env=env, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        m: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        consumed = 0.0
        total = sum(sent.values()) + 4
        while time.monotonic() < deadline and consumed < total:
            time.sleep(2)
            assert joiner.poll() is None, joiner.stderr.read().decode() if joiner.stderr else ""
            try:
                m = _metrics(port)
            except OSError:
                continue
            consumed = sum(
                v for (k, _), v in m.items() if k == "fmstream_join_records_consumed_total"
            )
        assert consumed == total
        time.sleep(3)
        m = _metrics(port)
    finally:
        _stop(joiner)  # alive to the end: SIGTERM exits 0
    dead = read_all(broker.client_options, topics.dead_letter)
    dead_from = Counter(dict(r.headers)["fmstream.source.topic"].decode() for r in dead)
    reasons = Counter(dict(r.headers)["fmstream.error"].decode() for r in dead)
    assert set(reasons) <= set(DEAD_LETTER_REASONS)
    assert sum(v for (k, _), v in m.items() if k == "fmstream_join_dead_letters_total") == len(dead)

    def metric(name: str, **labels: str) -> float:
        return m.get((name, tuple(sorted(labels.items()))), 0.0)

    # Keys are hostile too, so one id can reach two partitions: each labels it once.
    labeled = Counter(
        (r.partition, e.id)
        for r in read_all(broker.client_options, topics.labeled)
        for e in events_of([r])
    )
    assert set(labeled.values()) == {1}
    imp_valid = sent[topics.impressions] + 2 - dead_from[topics.impressions]
    clk_valid = sent[topics.clicks] + 2 - dead_from[topics.clicks]
    positives = metric("fmstream_join_labels_total", label="1")
    anomalies = {
        kind: metric("fmstream_join_anomalies_total", kind=kind)
        for kind in ("duplicate_impressions", "duplicate_clicks", "late_clicks", "orphan_clicks")
    }
    pending = metric("fmstream_join_pending_impressions")
    assert pending == 2  # the closers
    assert len(labeled) + anomalies["duplicate_impressions"] + pending == imp_valid
    # Each valid click labels an impression, is a duplicate, late, an orphan, or (the
    # two closers' clicks) still waits for its impression.
    assert (
        positives
        + anomalies["duplicate_clicks"]
        + anomalies["late_clicks"]
        + anomalies["orphan_clicks"]
        + 2
        == clk_valid
    )
    assert positives >= n // 100 and len(labeled) > 50 and len(dead) > n // 2
