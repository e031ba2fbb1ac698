"""The trainer daemon in-process on a real broker and a real RocksDB store."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from prometheus_client import CollectorRegistry

from deploy.apps.train.clients import open_daemon
from deploy.apps.train.daemon import TrainDaemon
from deploy.apps.train.metrics import TrainMetrics
from deploy.local.broker import EmbeddedBroker
from deploy.runtime.errors import ConfigError
from deploy.runtime.signals import StopRequested
from deploy.settings.tables import TopicSettings
from model.features import FeatureSchema, FieldSpec
from store.cache import CachedEmbeddings
from stream.events import LabeledEvent
from stream.kafka.admin import ensure_topics, topic_partitions
from tests.joinkit import read_all
from tests.trainkit import (
    T0,
    LabeledProducer,
    labeled_events,
    produce_batches,
    settings_for,
    stored,
    train_args,
)


def _run_until(daemon: TrainDaemon, done: Callable[[], bool], timeout_s: float = 60.0) -> None:
    stop = StopRequested()
    thread = threading.Thread(target=daemon.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while not done() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert done(), f"the trainer stopped at {daemon.positions}"


def _daemon(broker: EmbeddedBroker, topics: TopicSettings, store: Path) -> TrainDaemon:
    args = train_args(broker.client_options, topics.labeled, topics.dead_letter, store)
    settings = settings_for(args, topics)
    return open_daemon(settings, TrainMetrics(CollectorRegistry(), "deepfm"))


def test_it_learns_both_formats_dead_letters_bad_input_and_resumes_exactly(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    topics = make_topics(2)
    options = broker.client_options
    producer = LabeledProducer(options, topics.labeled)
    events = labeled_events(700)
    producer.batches(events[:300], partition=0, size=50)  # offsets 0-5
    producer.raw(b"{not json", partition=0, ts=events[0].ts)  # offset 6
    producer.singles(events[300:500], partition=1)  # offsets 0-199
    producer.raw(b'{"id": "x", "ts": 1}', partition=1, ts=events[0].ts)  # offset 200
    producer.flush()

    daemon = _daemon(broker, topics, tmp_path / "store")
    _run_until(daemon, lambda: daemon.positions == {0: (7, 0), 1: (201, 0)})
    first = stored(tmp_path / "store")
    assert first["examples_seen"] == 500
    assert first["labeled"] == {"0": [7, 0], "1": [201, 0]}
    dead = read_all(options, topics.dead_letter)
    reasons = sorted(dict(r.headers)["fmstream.error"] for r in dead)
    assert reasons == [b"invalid_json", b"missing_field"]

    # A restart learns only what came after: 200 more, nothing again.
    producer.batches(events[500:700], partition=0, size=64)
    producer.flush()
    again = _daemon(broker, topics, tmp_path / "store")
    assert again.positions == {0: (7, 0), 1: (201, 0)}
    assert again.trainer is not None and again.trainer.examples_seen == 500
    _run_until(again, lambda: again.positions.get(0) == (11, 0))
    assert stored(tmp_path / "store")["examples_seen"] == 700
    assert len(read_all(options, topics.dead_letter)) == 2  # none dead-lettered twice
    producer.close()


def test_a_restart_with_another_model_shape_is_refused_naming_both(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    topics = make_topics(1)
    produce_batches(broker.client_options, topics.labeled, [labeled_events(200)], size=100)
    daemon = _daemon(broker, topics, tmp_path / "store")
    _run_until(daemon, lambda: daemon.positions == {0: (2, 0)})

    args = train_args(broker.client_options, topics.labeled, topics.dead_letter, tmp_path / "store")
    args[args.index("--hidden-layers") + 1] = "2"  # same row width, another DNN
    settings = settings_for(args, topics)
    with pytest.raises(ConfigError) as refused:
        open_daemon(settings, TrainMetrics(CollectorRegistry(), "deepfm"))
    assert "model.hidden_layers=1" in str(refused.value)
    assert "model.hidden_layers=2" in str(refused.value)
    assert stored(tmp_path / "store")["examples_seen"] == 200  # and the store is untouched


def test_a_declared_schema_is_learned_with_and_a_restart_declaring_another_is_refused(
    broker: EmbeddedBroker, make_topics: Callable[[int], TopicSettings], tmp_path: Path
) -> None:
    topics = make_topics(1)
    produce_batches(broker.client_options, topics.labeled, [labeled_events(200)], size=100)
    args = train_args(broker.client_options, topics.labeled, topics.dead_letter, tmp_path / "s")
    # "hour" holds numbers: inferred, it would be continuous; declared, it is a category.
    declared = {"FMSTREAM_FEATURES_CATEGORICAL": "user,item,hour"}
    metrics = TrainMetrics(CollectorRegistry(), "deepfm")
    daemon = open_daemon(settings_for(args, topics, declared), metrics)
    _run_until(daemon, lambda: daemon.positions == {0: (2, 0)})
    assert daemon.schema == FeatureSchema(tuple(FieldSpec(n) for n in ("user", "item", "hour")))

    other = {"FMSTREAM_FEATURES_CATEGORICAL": "user,item", "FMSTREAM_FEATURES_CONTINUOUS": "hour"}
    with pytest.raises(ConfigError) as refused:
        open_daemon(settings_for(args, topics, other), TrainMetrics(CollectorRegistry(), "deepfm"))
    assert 'categorical = "hour,item,user"' in str(refused.value)  # the store's
    assert 'continuous = "hour"' in str(refused.value)  # and the configuration's
    assert stored(tmp_path / "s")["examples_seen"] == 200


def test_missing_output_topics_are_created_and_existing_ones_left_alone(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topics = TopicSettings.tagged(uuid.uuid4().hex[:8], partitions=3)
    ensure_topics(broker.client_options, {topics.labeled: 2, topics.dead_letter: 5})
    daemon = _daemon(broker, topics, tmp_path / "store")
    with daemon:
        admin = KafkaAdminClient(**broker.client_options.admin())
        try:
            have = topic_partitions(admin, [topics.dead_letter, topics.snapshots])
        finally:
            admin.close()
    assert have == {topics.dead_letter: 5, topics.snapshots: 1}


def _phase(prefix: str, start_ms: int, n: int) -> list[LabeledEvent]:
    return [
        LabeledEvent(f"{prefix}{i}", start_ms + i * 100, int(i % 3 == 0), None,
                     {"user": f"{prefix}{i % 40}", "item": f"i{i % 25}"})
        for i in range(n)
    ]  # fmt: skip


def test_stale_rows_are_evicted_in_event_time_and_a_crash_mid_eviction_finishes_it(
    broker: EmbeddedBroker,
    make_topics: Callable[[int], TopicSettings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topics = make_topics(1)
    # Offsets 0-9, then 10-19 three hours on.
    phases = [_phase("a", T0, 640), _phase("b", T0 + 3 * 3_600_000, 640)]
    produce_batches(broker.client_options, topics.labeled, phases, size=64)
    args = train_args(broker.client_options, topics.labeled, topics.dead_letter, tmp_path / "s")
    args += ["--store-ttl-hours", "1", "--evict-every-hours", "1"]
    store = tmp_path / "s"

    def crash(self: CachedEmbeddings, *_: object) -> None:
        raise RuntimeError("killed mid-eviction")

    monkeypatch.setattr(CachedEmbeddings, "evict", crash)
    daemon = open_daemon(settings_for(args, topics), TrainMetrics(CollectorRegistry(), "deepfm"))
    with daemon, pytest.raises(RuntimeError, match="mid-eviction"):
        while True:  # until the first batch three hours on makes the eviction due
            batch = daemon.feed.take(5.0)
            assert batch is not None, f"no eviction by {daemon.positions}"
            daemon.step(batch)
    interrupted = stored(store)
    assert interrupted["evicting_ms"] >= T0 + 3 * 3_600_000
    assert interrupted["labeled"] == {"0": [11, 0]}  # the crossing batch, learned

    monkeypatch.undo()
    registry = CollectorRegistry()
    again = open_daemon(settings_for(args, topics), TrainMetrics(registry, "deepfm"))
    _run_until(again, lambda: again.positions.get(0) == (20, 0))
    # The 40 users of three hours before, unseen for more than the TTL, and only they.
    assert (
        registry.get_sample_value("fmstream_train_store_rows_evicted_total", {"reason": "ttl"})
        == 40
    )
    after = stored(store)
    assert after["evicting_ms"] is None and after["examples_seen"] == 1280
    assert after["evict_next_ms"] > interrupted["evicting_ms"]
