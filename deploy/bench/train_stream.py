"""`fmstream bench train-stream`: the trainer daemon through the embedded broker, beside
the in-process step on the same events; and freshness, append to promoted snapshot.

Both run the real daemon (`open_daemon`, its input thread, the RocksDB store and
its hot-row cache, checkpoints and the publishing schedule) in this process.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from deploy.apps.train.clients import open_daemon
from deploy.apps.train.metrics import TrainMetrics
from deploy.apps.train.publish import Gate, Publisher
from deploy.apps.train.schedule import scheduled
from deploy.batch.replay.inputs import CRITEO_SCHEMA
from deploy.bench.train import Matmul, bench_model, criteo_like_events
from deploy.local.broker import EmbeddedBroker, free_port
from deploy.runtime.signals import StopRequested
from deploy.settings.tables import Settings, TopicSettings
from model.features import FeatureEncoder
from stream.events import LabeledEvent, encode_labeled_batch
from stream.kafka.admin import ensure_topics

_RECORD_EVENTS = 512
_T0 = 1_780_000_000_000


def _events(n: int, start_ms: int, step_ms: int, seed: int = 0) -> list[LabeledEvent]:
    features, labels = criteo_like_events(n, seed)
    return [
        LabeledEvent(f"e{seed}-{i}", start_ms + i * step_ms, int(y), None, f)
        for i, (f, y) in enumerate(zip(features, labels.tolist(), strict=True))
    ]


def _daemon_settings(
    settings: Settings, broker: EmbeddedBroker, topics: TopicSettings, root: Path, **daemon: Any
) -> Settings:
    train = dataclasses.replace(settings.train, store_dir=root / "store", device="cpu")
    train_daemon = dataclasses.replace(
        settings.train_daemon, model="deepfm", snapshot_dir=root / "snapshots", **daemon
    )
    kafka = dataclasses.replace(settings.kafka, bootstrap_servers=broker.bootstrap, profile="local")
    return dataclasses.replace(
        settings, train=train, train_daemon=train_daemon, kafka=kafka, topics=topics
    )


@contextmanager
def _running(settings: Settings) -> Iterator[CollectorRegistry]:
    """The daemon training in a thread, its publishing scheduled, until the block ends."""
    registry = CollectorRegistry()
    daemon = open_daemon(settings, TrainMetrics(registry, "deepfm"))
    stop = StopRequested()
    thread = threading.Thread(target=daemon.run, args=(stop,), name="bench-trainer")
    with scheduled(daemon, settings.train_daemon):
        thread.start()
        try:
            yield registry
        finally:
            stop.set()
            thread.join()


def _produce(
    producer: KafkaProducer, topic: str, events: list[LabeledEvent], partitions: int
) -> list[tuple[int, int, float]]:
    """Example batches round-robin over the partitions; each record's (partition,
    offset, wall time of its send)."""
    out = []
    for n, at in enumerate(range(0, len(events), _RECORD_EVENTS)):
        chunk = events[at : at + _RECORD_EVENTS]
        value, headers = encode_labeled_batch(chunk)
        sent = time.time()
        meta = producer.send(
            topic, value=value, headers=headers, partition=n % partitions,
            timestamp_ms=chunk[-1].ts,
        ).get(timeout=30)  # fmt: skip
        out.append((meta.partition, meta.offset, sent))
    return out


def _in_process(events: list[LabeledEvent], batch: int) -> float:
    """`bench train`'s measure (`bench_model`: DeepFM at the paper's settings, in
    memory, the median step) on the same events."""
    encoder = FeatureEncoder(CRITEO_SCHEMA)
    batches = [
        (
            encoder.encode([e.features for e in events[i : i + batch]]),
            np.array([e.label for e in events[i : i + batch]], np.float32),
        )
        for i in range(0, len(events), batch)
    ]
    return float(bench_model("deepfm", batches, Matmul(batch, 400, 400))["examples_per_s"])


def _watch(
    registry: CollectorRegistry, until: Callable[[float], bool]
) -> list[tuple[float, float]]:
    """(time, examples trained) every 50 ms until `until(examples)`."""
    samples = []
    while True:
        seen = registry.get_sample_value("fmstream_train_examples_total", {"model": "deepfm"})
        samples.append((time.perf_counter(), seen or 0.0))
        if until(seen or 0.0):
            return samples
        time.sleep(0.05)


def bench_train_stream(settings: Settings, n: int, timeout_s: float = 1800.0) -> dict[str, Any]:
    """Examples/s of the daemon on `n` labeled events already in the broker, from its
    first trained batch to its last, against the in-process step on the same events."""
    batch = settings.train.batch_size
    events = _events(n, _T0, 10)
    in_process = _in_process(events, batch)
    with EmbeddedBroker(port=free_port(), startup_timeout_s=30.0) as broker, \
            tempfile.TemporaryDirectory(prefix="fmstream-bench-stream-") as tmp:  # fmt: skip
        topics = TopicSettings(partitions=2)
        ensure_topics(broker.client_options, {topics.labeled: topics.partitions})
        producer = KafkaProducer(**broker.client_options.producer(acks="all"))
        _produce(producer, topics.labeled, events, topics.partitions)
        producer.close()
        # Not the daemon's to hold: a heap of events in its process slows every GC pass.
        del events
        gc.collect()
        daemon_settings = _daemon_settings(
            settings, broker, topics, Path(tmp), checkpoint_interval_s=10.0,
            publish_interval_s=60.0,
        )  # fmt: skip
        deadline = time.perf_counter() + timeout_s
        with _running(daemon_settings) as registry:
            samples = _watch(registry, lambda seen: seen >= n or time.perf_counter() > deadline)
            spent = {
                name: registry.get_sample_value(f"fmstream_train_{name}_seconds_sum") or 0.0
                for name in ("step", "checkpoint", "publish_pause")
            }
            pauses = registry.get_sample_value("fmstream_train_publish_pause_seconds_count")
            hit_ratio = registry.get_sample_value("fmstream_train_cache_hit_ratio")
    started = next(i for i, (_, seen) in enumerate(samples) if seen > 0)
    (t0, first), (t1, last) = samples[started], samples[-1]
    stream = (last - first) / (t1 - t0)
    return {
        "benchmark": "train-stream",
        "model": "DeepFM",
        "settings": "k=10, 400-400-400, dropout keep 0.5, Adam; RocksDB store, "
        f"{settings.train.cache_rows}-row cache, checkpoint 10 s, publish 60 s",
        "events": n,
        "batch": batch,
        "trained": int(last),
        "stream_examples_per_s": round(stream),
        "in_process_examples_per_s": round(in_process),
        "stream_vs_in_process": round(stream / in_process, 3),
        "snapshots_published": int(pauses or 0),
        "wall_s": round(t1 - t0, 2),
        "seconds_in": {name: round(v, 2) for name, v in spent.items()},
        "cache_hit_ratio": round(hit_ratio or 0.0, 3),
        "note": "the stream also scores each batch before learning it (progressive "
        "validation), decodes and encodes it, and checkpoints; the in-process run only learns",
    }


def bench_freshness(
    settings: Settings, interval_s: float, duration_s: float, rate: int
) -> dict[str, Any]:
    """Wall seconds from a labeled record's append to the announcement of the first
    promoted snapshot that learned it, at `rate` events/s for `duration_s`."""
    with EmbeddedBroker(port=free_port(), startup_timeout_s=30.0) as broker, \
            tempfile.TemporaryDirectory(prefix="fmstream-bench-fresh-") as tmp:  # fmt: skip
        topics = TopicSettings(partitions=2)
        ensure_topics(broker.client_options, {topics.labeled: topics.partitions})
        daemon_settings = _daemon_settings(
            settings, broker, topics, Path(tmp), publish_interval_s=interval_s
        )
        producer = KafkaProducer(**broker.client_options.producer(acks="all"))
        appended: list[tuple[int, int, float]] = []
        with _running(daemon_settings):
            start = time.time()
            per_tick = max(1, rate // 10)
            tick = 0
            while time.time() - start < duration_s:
                now_ms = int(time.time() * 1000)
                appended += _produce(producer, topics.labeled, _events(per_tick, now_ms, 0, tick),
                                     topics.partitions)  # fmt: skip
                tick += 1
                time.sleep(max(0.0, start + tick / 10 - time.time()))
            producer.close()
            end = {p: o for p, o, _ in appended}
            covered = time.time() + 3 * interval_s + 30
            snapshots = Path(tmp) / "snapshots"
            while time.time() < covered and not _covers(snapshots, end):
                time.sleep(0.5)
        announced = _announcements(daemon_settings)
    delays = _delays(appended, announced)
    return {
        "benchmark": "freshness",
        "publish_interval_s": interval_s,
        "duration_s": duration_s,
        "events_per_s": rate,
        "records": len(appended),
        "promoted_snapshots": len(announced),
        "records_measured": len(delays),
        "freshness_p50_s": round(float(np.percentile(delays, 50)), 2) if delays else None,
        "freshness_p99_s": round(float(np.percentile(delays, 99)), 2) if delays else None,
        "freshness_max_s": round(max(delays), 2) if delays else None,
        "mean_s": round(statistics.fmean(delays), 2) if delays else None,
    }


def _announcements(settings: Settings) -> list[tuple[float, dict[str, list[int]]]]:
    """(wall time announced, positions) of every promoted snapshot, in order (the
    snapshots topic has one partition; the embedded broker's end offsets are not to
    be trusted, so it is read until idle)."""
    consumer = KafkaConsumer(**settings.kafka.client_options().consumer(enable_auto_commit=False))
    try:
        part = TopicPartition(settings.topics.snapshots, 0)
        consumer.assign([part])
        consumer.seek_to_beginning(part)
        records: list[Any] = []
        while polled := consumer.poll(timeout_ms=2000):  # until 2 s bring nothing
            for batch in polled.values():
                records += batch
    finally:
        consumer.close()
    return [(r.timestamp / 1000, json.loads(r.value)["positions"]) for r in records]


def _covers(snapshots: Path, end: dict[int, int]) -> bool:
    """Whether the promoted snapshot learned every record up to `end` (partition ->
    offset)."""
    published = Publisher(snapshots, "deepfm", Gate(), time.time)
    latest = published.latest()
    manifest = published.manifest(latest) if latest is not None else None
    if manifest is None:
        return False
    positions = manifest["positions"]
    return all(positions.get(str(p), [0])[0] > o for p, o in end.items())


def _delays(
    appended: list[tuple[int, int, float]], announced: list[tuple[float, dict[str, list[int]]]]
) -> list[float]:
    out = []
    for partition, offset, sent in appended:
        for at, positions in announced:
            if positions.get(str(partition), [0])[0] > offset:
                out.append(at - sent)
                break
    return out
