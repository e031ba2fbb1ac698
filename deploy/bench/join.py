"""`fmstream bench join`: the joiner core alone, and end to end through a broker beside a
plain kafka-python consumer reading the same topics in the same run."""

from __future__ import annotations

import cProfile
import dataclasses
import logging
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from deploy.apps.join.clients import open_daemon
from deploy.apps.join.metrics import JoinMetrics
from deploy.bench.join_latency import label_latency
from deploy.local.broker import EmbeddedBroker, free_port
from deploy.runtime.heap import settle_heap
from deploy.settings.tables import JoinDaemonSettings, Settings, TopicSettings
from stream.errors import RecordError
from stream.events import (
    CLICKS,
    IMPRESSIONS,
    decode_click,
    decode_impression,
    reference_impression,
)
from stream.join.core import JoinConfig, JoinerCore, join_raw
from stream.kafka.admin import ensure_topics
from stream.kafka.options import ClientOptions
from stream.kafka.producer import KafkaRecordSink
from stream.simulate import Record, Simulator

log = logging.getLogger(__name__)


def bench_join(settings: Settings, repeat: int, partitions: int) -> dict[str, Any]:
    config = dataclasses.replace(settings.simulate, days=settings.bench.simulate_days)
    join = dataclasses.replace(settings.join, window_ms=config.window_ms)
    records = [r for day in Simulator(config).run() for r in day.records]
    core = bench_core(records, join, repeat)
    batch_max = settings.join_daemon.labeled_batch_max
    settle_heap()  # as `fmstream join` does once started

    def daemon(batch_max: int) -> JoinDaemonSettings:
        return dataclasses.replace(
            settings.join_daemon, metrics_port=0, labeled_batch_max=batch_max
        )

    with EmbeddedBroker(port=free_port(), startup_timeout_s=30.0) as broker:
        # Side by side in each repeat: example batches, then one event per record.
        e2e = [
            _end_to_end(broker, records, join, partitions, f"{i}-{m}", daemon(m))
            for i in range(repeat)
            for m in (batch_max, 1)
        ]
        profile = cProfile.Profile()
        _end_to_end(broker, records, join, partitions, "profiled", daemon(batch_max), profile)
        latency = label_latency(broker, records, join, partitions, daemon(batch_max))
    batched = [r for r in e2e if r["labeled_batch_max"] == batch_max]
    plain = [r for r in e2e if r["labeled_batch_max"] == 1]
    raw = statistics.median(r["raw_consume_records_per_s"] for r in e2e)
    joined = statistics.median(r["joiner_records_per_s"] for r in batched)
    one = statistics.median(r["joiner_records_per_s"] for r in plain)
    return {
        "benchmark": "join",
        "records": len(records),
        "partitions": partitions,
        "repeat": repeat,
        **core,
        "raw_consume_records_per_s": round(raw),
        "labeled_batch_max": batch_max,
        "joiner_records_per_s": round(joined),
        "joiner_labeled_per_s": round(statistics.median(r["labeled_per_s"] for r in batched)),
        "joiner_vs_raw_consume": round(joined / raw, 3),
        "joiner_one_event_per_record_records_per_s": round(one),
        "joiner_one_event_per_record_vs_raw_consume": round(one / raw, 3),
        "profile_top5_tottime": _top(profile, 5),
        **latency,
        "runs": e2e,
    }


def _top(profile: cProfile.Profile, n: int) -> list[dict[str, Any]]:
    """The `n` functions with the most time of their own, and their share of the run."""
    stats = pstats.Stats(profile).get_stats_profile()
    ranked = sorted(stats.func_profiles.items(), key=lambda kv: kv[1].tottime, reverse=True)
    return [
        {
            "function": f"{Path(f.file_name).name}:{f.line_number}({name})",
            "share": round(f.tottime / stats.total_tt, 3),
        }
        for name, f in ranked[:n]
    ]


def bench_core(records: list[Record], join: JoinConfig, repeat: int) -> dict[str, Any]:
    """Events/s of the core on decoded events, and records/s with decoding."""
    decoded: list[Any] = []
    for r in records:
        try:
            decoded.append(
                (True, decode_impression(r.value))
                if r.topic == IMPRESSIONS
                else (False, decode_click(r.value))
            )
        except RecordError:
            continue
    core_times, full_times = [], []
    for _ in range(repeat):
        core = JoinerCore(join)
        start = time.perf_counter()
        for is_imp, event in decoded:
            core.impression(event) if is_imp else core.click(event)
        core_times.append(time.perf_counter() - start)
        core = JoinerCore(join)
        start = time.perf_counter()
        for r in records:
            try:
                join_raw(core, r.topic, r.value)
            except RecordError:
                continue
        full_times.append(time.perf_counter() - start)
    return {
        "core_events_per_s": round(len(decoded) / statistics.median(core_times)),
        "core_with_decode_records_per_s": round(len(records) / statistics.median(full_times)),
        "impression_decode_us": _decode_us(records, repeat),
    }


def _decode_us(records: list[Record], repeat: int) -> dict[str, float]:
    """Microseconds per impression from bytes to a validated event: the fast path
    (msgspec) and the reference path it falls back to (orjson), side by side."""
    raw = [r.value for r in records if r.topic == IMPRESSIONS][:20_000]
    paths = {"msgspec": decode_impression, "orjson": reference_impression}
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeat):
        for name, decode in paths.items():
            start = time.perf_counter()
            for value in raw:
                decode(value)
            times[name].append(time.perf_counter() - start)
    return {name: round(statistics.median(t) / len(raw) * 1e6, 2) for name, t in times.items()}


def _end_to_end(
    broker: EmbeddedBroker,
    records: list[Record],
    join: JoinConfig,
    partitions: int,
    run: str,
    daemon_settings: JoinDaemonSettings,
    profile: cProfile.Profile | None = None,
) -> dict[str, Any]:
    """One run; `profile` is enabled while the daemon joins (not while the records
    are produced or read raw)."""
    options = broker.client_options
    tag = f"bench{run}"
    topics = TopicSettings.tagged(tag, partitions)
    ensure_topics(options, topics.all())
    sink = KafkaRecordSink(options, {IMPRESSIONS: topics.impressions, CLICKS: topics.clicks})
    for r in records:
        sink.write(r)
    sink.close()
    raw_s = _raw_consume(options, topics, len(records))
    with tempfile.TemporaryDirectory(prefix="fmstream-bench-join-") as tmp:
        settings = dataclasses.replace(daemon_settings, group_id=f"g-{tag}", state_dir=Path(tmp))
        metrics = JoinMetrics(CollectorRegistry())
        with open_daemon(options, topics, join, settings, metrics, time.time) as daemon:
            while not daemon.tasks:  # the group join is not part of the rate
                daemon.step()
            consumed = 0
            if profile is not None:
                profile.enable()
            start = time.perf_counter()
            while consumed < len(records):
                consumed += daemon.step()
            joined_s = time.perf_counter() - start
            if profile is not None:
                profile.disable()
            labeled = sum(
                t.core.stats.labels_positive + t.core.stats.labels_negative
                for t in daemon.tasks.values()
            )
    log.info("bench_join run=%s raw_s=%.2f joiner_s=%.2f", run, raw_s, joined_s)
    return {
        "labeled_batch_max": daemon_settings.labeled_batch_max,
        "raw_consume_records_per_s": len(records) / raw_s,
        "joiner_records_per_s": len(records) / joined_s,
        "labeled_per_s": labeled / joined_s,
    }


def _raw_consume(options: ClientOptions, topics: TopicSettings, want: int) -> float:
    consumer = KafkaConsumer(**options.consumer(enable_auto_commit=False))
    tps = [
        TopicPartition(t, p)
        for t in (topics.impressions, topics.clicks)
        for p in range(topics.partitions)
    ]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    try:
        got = 0
        start = time.perf_counter()
        while got < want:
            got += sum(len(v) for v in consumer.poll(timeout_ms=500).values())
        return time.perf_counter() - start
    finally:
        consumer.close()
