"""The label-1 latency of the join daemon: from a click's send to the moment its
labeled batch can be read, at the simulator's pace, through a real broker."""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from deploy.apps.join.clients import open_daemon
from deploy.apps.join.metrics import JoinMetrics
from deploy.apps.simulate.driver import Pacer
from deploy.local.broker import EmbeddedBroker
from deploy.runtime.errors import DeployError
from deploy.runtime.signals import StopRequested
from deploy.settings.tables import JoinDaemonSettings, TopicSettings
from stream.events import CLICKS, IMPRESSIONS, LabeledEvent, decode_labeled_record
from stream.join.core import JoinConfig
from stream.kafka.admin import ensure_topics
from stream.kafka.labeled_reader import LabeledReader
from stream.kafka.options import ClientOptions
from stream.kafka.producer import KafkaRecordSink
from stream.simulate import Record

SPEED = 1_440.0  # a simulated day in a wall minute
_SHARE = 0.2  # of the day's records: enough clicks for a p99, a short run
_DRAIN_S = 5.0


def label_latency(
    broker: EmbeddedBroker,
    records: list[Record],
    join: JoinConfig,
    partitions: int,
    daemon_settings: JoinDaemonSettings,
) -> dict[str, Any]:
    """p50/p99 wall ms from sending a click to reading its label 1 on `labeled`."""
    options = broker.client_options
    topics = TopicSettings.tagged("latency", partitions)
    ensure_topics(options, topics.all())
    traffic = records[: int(len(records) * _SHARE)]
    stop = StopRequested()
    seen: dict[str, float] = {}
    reader = threading.Thread(target=_read_labels, args=(options, topics, seen, stop))
    with tempfile.TemporaryDirectory(prefix="fmstream-bench-latency-") as tmp:
        settings = dataclasses.replace(
            daemon_settings, group_id="g-latency", state_dir=Path(tmp), metrics_port=0
        )
        daemon = open_daemon(
            options, topics, join, settings, JoinMetrics(CollectorRegistry()), time.time
        )
        joiner = threading.Thread(target=daemon.run, args=(stop,))
        joiner.start()
        reader.start()
        try:
            _wait_for_partitions(daemon.tasks, partitions)  # the group join is not latency
            sent = _send_paced(options, topics, traffic)
            time.sleep(_DRAIN_S)
        finally:
            stop.set()
            joiner.join(timeout=60)
            reader.join(timeout=60)
    waits = sorted(1000 * (seen[i] - t) for i, t in sent.items() if i in seen)
    return {
        "speed": SPEED,
        "latency_records": len(traffic),
        "clicks_labeled": len(waits),
        "label1_latency_ms_p50": round(statistics.median(waits), 1) if waits else None,
        "label1_latency_ms_p99": round(waits[int(0.99 * (len(waits) - 1))], 1) if waits else None,
    }


def _wait_for_partitions(tasks: dict[int, Any], partitions: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while len(tasks) < partitions:
        if time.monotonic() > deadline:
            raise DeployError(f"the joiner took no partitions in {timeout_s:.0f} s")
        time.sleep(0.05)


def _send_paced(
    options: ClientOptions, topics: TopicSettings, traffic: list[Record]
) -> dict[str, float]:
    """Sends the records at SPEED; the wall time of each impression's first click."""
    sink = KafkaRecordSink(options, {IMPRESSIONS: topics.impressions, CLICKS: topics.clicks})
    pacer = Pacer(SPEED)
    sent: dict[str, float] = {}
    try:
        for record in traffic:
            pacer.wait_for(record.delivery)
            sink.write(record)
            if record.topic == CLICKS:
                sent.setdefault(record.key.decode(errors="replace"), time.monotonic())
    finally:
        sink.close()
    return sent


def _read_labels(
    options: ClientOptions, topics: TopicSettings, seen: dict[str, float], stop: StopRequested
) -> None:
    reader = LabeledReader(options, topics.labeled)
    reader.seek({})
    try:
        while not stop.is_set():
            records = reader.poll(50)
            now = time.monotonic()
            for record in records:
                for event in decode_labeled_record(record.value, record.headers):
                    if isinstance(event, LabeledEvent) and event.label == 1:
                        seen.setdefault(event.id, now)
    finally:
        reader.close()
