"""`replay --via-kafka`: the log's records through an embedded broker and the join daemon
(the production path, changelog and all) instead of the in-process joiner core.

The labeled topic is read back whole and sorted by impression time before the
period protocol sees it (the daemon's partitions interleave arbitrarily), so this
mode holds the labeled events in memory: bound it with `--max-rows`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from prometheus_client import CollectorRegistry

from deploy.apps.join.clients import open_daemon
from deploy.apps.join.metrics import JoinMetrics
from deploy.local.broker import EmbeddedBroker, free_port
from deploy.runtime.errors import DeployError
from deploy.settings.tables import JoinDaemonSettings, Settings, TopicSettings
from stream.errors import RecordError
from stream.events import (
    CLICKS,
    IMPRESSIONS,
    Click,
    Impression,
    LabeledEvent,
    decode_labeled_record,
    encode_click,
    encode_impression,
)
from stream.kafka.admin import ensure_topics
from stream.kafka.options import ClientOptions
from stream.kafka.producer import KafkaRecordSink
from stream.logs.join_input import LogRecord
from stream.logs.log_rows import BadRow

_IDLE_STEPS = 20  # polls with nothing new before the daemon is taken to be done


def labeled_via_kafka(
    items: Iterable[LogRecord | BadRow], settings: Settings, on_bad: Callable[[BadRow], None]
) -> Iterator[LabeledEvent]:
    topics = TopicSettings(partitions=settings.topics.partitions)
    with EmbeddedBroker(port=free_port(), startup_timeout_s=30.0) as broker:
        options = broker.client_options
        ensure_topics(options, topics.all())
        sent = _produce(options, topics, items, settings, on_bad)
        with tempfile.TemporaryDirectory(prefix="fmstream-replay-join-") as state:
            _join(options, topics, settings, Path(state), sent)
        events, dead = _read_back(options, topics)
    for reason in dead:
        on_bad(BadRow(0, f"dead-lettered by the joiner: {reason}"))
    yield from sorted(events, key=lambda e: e.ts)


def _produce(
    options: ClientOptions,
    topics: TopicSettings,
    items: Iterable[LogRecord | BadRow],
    settings: Settings,
    on_bad: Callable[[BadRow], None],
) -> int:
    sink = KafkaRecordSink(options, {IMPRESSIONS: topics.impressions, CLICKS: topics.clicks})
    newest = 0
    for item in items:
        if isinstance(item, BadRow):
            on_bad(item)
            continue
        sink.write(item)
        newest = max(newest, item.ts)
    sink.close()
    # Event time far past the log on every partition, so the last windows close.
    end = newest + settings.join.window_ms + settings.join.allowed_lateness_ms + 1
    producer = KafkaProducer(**options.producer())
    for p in range(topics.partitions):
        closer = f"fmstream-replay-closer-{p}"
        producer.send(
            topics.impressions, encode_impression(Impression(closer, end, {})), partition=p
        )
        producer.send(topics.clicks, encode_click(Click(closer + "-click", end)), partition=p)
    producer.flush()
    producer.close()
    return sink.sent + 2 * topics.partitions


def _join(
    options: ClientOptions, topics: TopicSettings, settings: Settings, state: Path, sent: int
) -> None:
    cfg = JoinDaemonSettings(group_id="fmstream-replay", state_dir=state, metrics_port=0)
    metrics = JoinMetrics(CollectorRegistry())
    with open_daemon(options, topics, settings.join, cfg, metrics, time.time) as daemon:
        consumed = idle = 0
        while consumed < sent or idle < _IDLE_STEPS:
            got = daemon.step()
            consumed += got
            idle = idle + 1 if got == 0 and consumed >= sent else 0


def _events(record: Any) -> list[LabeledEvent]:
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    try:
        items = decode_labeled_record(record.value, tuple(record.headers or ()))
    except RecordError as exc:
        raise DeployError(f"the joiner wrote an unreadable record at {where}: {exc}") from exc
    bad = [item for item in items if isinstance(item, RecordError)]
    if bad:
        raise DeployError(f"the joiner wrote an unreadable event at {where}: {bad[0]}")
    return [item for item in items if isinstance(item, LabeledEvent)]


def _read_back(
    options: ClientOptions, topics: TopicSettings
) -> tuple[list[LabeledEvent], list[str]]:
    consumer = KafkaConsumer(
        topics.labeled,
        topics.dead_letter,
        **options.consumer(auto_offset_reset="earliest", consumer_timeout_ms=3_000),
    )
    events: list[LabeledEvent] = []
    dead: list[str] = []
    try:
        for record in consumer:
            if record.topic == topics.labeled:
                events.extend(_events(record))
            else:
                headers = dict(record.headers or ())
                dead.append(headers.get("fmstream.error", b"?").decode())
    finally:
        consumer.close()
    return events, dead
