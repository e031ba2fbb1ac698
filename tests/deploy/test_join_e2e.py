"""The join daemon as real processes: SIGKILLed at random while the simulator streams,
two instances with rebalances, and a flood of malformed records. At the end the
labeled topic must equal an offline join of the same input: no missing id, no
extra, no duplicate, no wrong label."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from deploy.local.broker import EmbeddedBroker, free_port
from deploy.settings.tables import TopicSettings
from stream.events import FORMAT_HEADER, LABELED_BATCH_V1
from stream.kafka.admin import ensure_topics
from stream.simulate import SimulationConfig
from tests.joinkit import (
    Inputs,
    events_of,
    label_differences,
    labels_of,
    offline_labels,
    read_all,
)

FMSTREAM = str(Path(sys.executable).with_name("fmstream"))
SIM = SimulationConfig(
    seed=11,
    days=1,
    impressions_per_day=9_000,
    users=600,
    items=120,
    ctr=0.08,
    late_share=0.1,
    duplicate_click_rate=0.05,
    duplicate_impression_rate=0.02,
    orphan_click_rate=0.05,
    malformed_rate=0.01,
)
SPEED = 1_800  # one simulated day in 48 s


def _env(broker: EmbeddedBroker, topics: TopicSettings, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "FMSTREAM_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "FMSTREAM_KAFKA_PROFILE": "local",
        "FMSTREAM_LOGGING_LEVEL": "WARNING",
        "FMSTREAM_JOIN_METRICS_PORT": "0",
        "FMSTREAM_JOIN_IDLE_TIMEOUT_S": "5",
        "FMSTREAM_JOIN_GROUP_ID": f"g-{topics.impressions}",
    }
    for name in (
        "impressions",
        "clicks",
        "labeled",
        "corrections",
        "dead_letter",
        "join_changelog",
    ):
        env[f"FMSTREAM_TOPICS_{name.upper()}"] = getattr(topics, name)
    env["FMSTREAM_TOPICS_PARTITIONS"] = str(topics.partitions)
    env.update(extra)
    return env


def _simulate(env: dict[str, str], truth: Path) -> subprocess.Popen[bytes]:
    args = ["simulate", "--truth", str(truth), "--speed", str(SPEED)]
    for name in ("seed", "days", "impressions_per_day", "users", "items", "ctr", "late_share"):
        args += ["--" + name.replace("_", "-"), str(getattr(SIM, name))]
    for name in ("duplicate_click_rate", "duplicate_impression_rate", "orphan_click_rate"):
        args += ["--" + name.replace("_", "-"), str(getattr(SIM, name))]
    args += ["--malformed-rate", str(SIM.malformed_rate)]
    return subprocess.Popen([FMSTREAM, *args], env=env, stderr=subprocess.PIPE)


def _joiner(env: dict[str, str], state: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [FMSTREAM, "join", "--state-dir", str(state)], env=env, stderr=subprocess.PIPE
    )


def _close_every_window(broker: EmbeddedBroker, topics: TopicSettings) -> set[str]:
    """Event time far past the traffic on every partition, so the last windows close."""
    send = Inputs(broker.client_options, topics)
    end = SIM.start_ms + SIM.days * 86_400_000 + 3 * 3_600_000
    closers = set()
    for p in range(topics.partitions):
        send.impression(f"closer-{p}", end, partition=p)
        send.click(f"closer-click-{p}", end, partition=p)
        closers.add(f"closer-{p}")
    send.flush()
    send.close()
    return closers


def _wait_for_labels(broker: EmbeddedBroker, topics: TopicSettings, want: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(events_of(read_all(broker.client_options, topics.labeled, idle_ms=1_000))) >= want:
            return
        time.sleep(2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    assert code == 0, proc.stderr.read().decode() if proc.stderr else code


def _finish(
    broker: EmbeddedBroker,
    topics: TopicSettings,
    simulator: subprocess.Popen[bytes],
    joiners: list[subprocess.Popen[bytes]],
) -> None:
    """Lets the traffic end and every window close, stops the joiners with SIGTERM and
    compares the labeled topic with the offline join."""
    assert simulator.wait(timeout=120) == 0
    closers = _close_every_window(broker, topics)
    expected = offline_labels(SIM)
    _wait_for_labels(broker, topics, len(expected))
    for joiner in joiners:
        _stop(joiner)
    got = labels_of(read_all(broker.client_options, topics.labeled))
    for closer in closers:
        got.pop(closer, None)  # its own window never closes
    duplicated = {rid: ls for rid, ls in got.items() if len(ls) > 1}
    assert not duplicated, f"{len(duplicated)} ids labeled more than once"
    assert set(got) == set(expected), (
        f"missing {len(set(expected) - set(got))}, extra {len(set(got) - set(expected))}"
    )
    wrong = [rid for rid, ls in got.items() if ls[0] != expected[rid]]
    assert not wrong, f"{len(wrong)} wrong labels"
    assert sum(expected.values()) > 200  # the test has clicks worth the name


# Example batches (the default), and one plain event per record. Each restart takes
# one of three state directories in turn, so most recoveries start from a checkpoint
# (a fresh or stale directory) and some from local state; kills land in checkpoints.
@pytest.mark.parametrize("batch_max", ["2000", "1"])
def test_sigkilled_ten_times_while_streaming_the_labels_equal_an_offline_join(
    broker: EmbeddedBroker,
    make_topics: Callable[[int], TopicSettings],
    tmp_path: Path,
    batch_max: str,
) -> None:
    topics = make_topics(3)
    env = _env(
        broker,
        topics,
        FMSTREAM_JOIN_LABELED_BATCH_MAX=batch_max,
        FMSTREAM_JOIN_STATE_CHECKPOINT_INTERVAL="5",
    )
    simulator = _simulate(env, tmp_path / "truth.csv")
    rng = random.Random(5)
    joiner = _joiner(env, tmp_path / "state-0")
    for k in range(1, 11):
        time.sleep(rng.uniform(1.0, 4.5))
        joiner.send_signal(signal.SIGKILL)
        joiner.wait()
        joiner = _joiner(env, tmp_path / f"state-{k % 3}")
    assert simulator.poll() is None, "the kills should land while the simulator streams"
    _finish(broker, topics, simulator, [joiner])
    records = read_all(broker.client_options, topics.labeled)
    formats = {dict(r.headers or ()).get(FORMAT_HEADER) for r in records}
    assert formats == ({None} if batch_max == "1" else {LABELED_BATCH_V1})
    assert (len(records) < len(events_of(records))) == (batch_max != "1")


def test_two_instances_rebalancing_mid_stream_equal_an_offline_join(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    topics = make_topics(3)
    env = _env(broker, topics, FMSTREAM_JOIN_STATE_CHECKPOINT_INTERVAL="5")
    simulator = _simulate(env, tmp_path / "truth.csv")
    first = _joiner(env, tmp_path / "a")
    time.sleep(8)
    second = _joiner(env, tmp_path / "b")  # partitions move to an instance without state
    time.sleep(12)
    first.send_signal(signal.SIGKILL)  # and all come to the second one
    first.wait()
    time.sleep(8)
    first = _joiner(env, tmp_path / "a")  # back: its own state is stale, the changelog is not
    _finish(broker, topics, simulator, [first, second])


def test_a_flood_of_malformed_records_is_dead_lettered_and_the_daemon_lives(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    topics = make_topics(2)
    rng = random.Random(9)
    send = Inputs(broker.client_options, topics)
    kinds = [
        lambda i: bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))),
        lambda i: b'{"id": %d, "ts": 1780000000000, "features": {}}' % i,
        lambda i: b'{"id": "f%d", "ts": -5, "features": {}}' % i,
        lambda i: b'{"id": "", "ts": 1780000000000, "features": {}}',
        lambda i: b'{"id": "f%d", "ts": 99999999999999999, "features": {}}' % i,
        lambda i: b'["not", "an", "object"]',
        lambda i: b'{"id": "f%d"}' % i,
        lambda i: (
            b'{"id": "f%d", "ts": 1780000000000, "pad": "%s"}' % (i, b"x" * 70_000)
            if i % 100 == 7
            else b"\xff"
        ),
    ]
    n = 10_000
    for i in range(n):
        topic = topics.impressions if i % 2 else topics.clicks
        send.raw(topic, kinds[i % len(kinds)](i), i % 2, f"bad{i}", 1_780_000_000_000)
    send.impression("alive", 1_780_000_000_000, partition=0)
    send.click("alive", 1_780_000_000_010, partition=0)
    send.flush()
    send.close()
    joiner = _joiner(_env(broker, topics), tmp_path / "state")
    deadline = time.monotonic() + 120
    dead: list[object] = []
    while time.monotonic() < deadline and len(dead) < n:
        time.sleep(2)
        assert joiner.poll() is None, joiner.stderr.read().decode() if joiner.stderr else ""
        dead = read_all(broker.client_options, topics.dead_letter, idle_ms=1_000)
    _stop(joiner)
    keys = sorted(int(r.key[3:]) for r in dead)  # type: ignore[attr-defined]
    assert keys == list(range(n))  # every one, once
    assert labels_of(read_all(broker.client_options, topics.labeled)) == {"alive": [1]}


def test_a_paused_broker_is_waited_out_and_nothing_is_lost_or_doubled(tmp_path: Path) -> None:
    n = 20_000
    with EmbeddedBroker(port=free_port(), startup_timeout_s=30.0) as own:
        topics = TopicSettings(partitions=2)
        ensure_topics(own.client_options, topics.all())
        send = Inputs(own.client_options, topics)
        base = 1_780_000_000_000
        for i in range(n):
            send.impression(f"a{i}", base + i * 10, partition=i % 2)
            if i % 3 == 0:
                send.click(f"a{i}", base + i * 10 + 5, partition=i % 2)
        for p in range(2):
            send.impression(f"closer-{p}", base + 3_600_000, partition=p)
            send.click(f"closer-click-{p}", base + 3_600_000, partition=p)
        send.flush()
        send.close()
        joiner = _joiner(_env(own, topics), tmp_path / "state")
        # One reader kept open sees the first labels as they land (a fresh reader's
        # first fetch alone can take longer than the joiner needs for the rest).
        watcher = KafkaConsumer(
            topics.labeled, **own.client_options.consumer(auto_offset_reset="earliest")
        )
        deadline = time.monotonic() + 60
        while not watcher.poll(timeout_ms=50):
            assert time.monotonic() < deadline, "the joiner labeled nothing"
        watcher.close()
        # Paused mid-stream: most of the input is still to be joined.
        assert own.pid is not None
        os.kill(own.pid, signal.SIGSTOP)  # mid-stream the broker hangs: requests time out
        time.sleep(30)
        os.kill(own.pid, signal.SIGCONT)
        deadline = time.monotonic() + 120
        labels: dict[str, list[int]] = {}
        while time.monotonic() < deadline and len(labels) < n:
            time.sleep(2)
            assert joiner.poll() is None, joiner.stderr.read().decode() if joiner.stderr else ""
            labels = labels_of(read_all(own.client_options, topics.labeled, idle_ms=1_000))
        _stop(joiner)
        labels.pop("closer-0", None)
        labels.pop("closer-1", None)
        want = {f"a{i}": 1 if i % 3 == 0 else 0 for i in range(n)}
        assert label_differences(labels, want) == {}


def test_an_instance_frozen_past_its_session_timeout_writes_nothing_after_takeover(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    topics = make_topics(2)
    env = _env(broker, topics)
    simulator = _simulate(env, tmp_path / "truth.csv")
    zombie = _joiner(env, tmp_path / "a")
    time.sleep(6)
    other = _joiner(env, tmp_path / "b")
    time.sleep(8)  # each instance holds a partition now
    zombie.send_signal(signal.SIGSTOP)  # frozen mid-stream, holding what it had read
    time.sleep(12)  # past its session timeout (3 s): the other instance takes over
    zombie.send_signal(signal.SIGCONT)  # its writes are refused; it rejoins the group
    _finish(broker, topics, simulator, [zombie, other])
