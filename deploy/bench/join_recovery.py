"""`fmstream bench join-recovery`: how long a partition takes to recover on an instance
without its state, against the length of its history, from the newest checkpoint
and (for comparison) from the whole changelog."""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from deploy.apps.join.clients import open_daemon, open_io
from deploy.apps.join.metrics import JoinMetrics
from deploy.apps.join.recovery import recover
from deploy.local.broker import EmbeddedBroker, free_port
from deploy.settings.tables import JoinDaemonSettings, Settings, TopicSettings
from stream.events import CLICKS, IMPRESSIONS
from stream.join.core import JoinConfig
from stream.join.state import JoinState
from stream.kafka.admin import ensure_topics
from stream.kafka.producer import KafkaRecordSink
from stream.simulate import Simulator

log = logging.getLogger(__name__)


def bench_join_recovery(settings: Settings, histories: list[int]) -> dict[str, Any]:
    """One partition per history length (the worst case: all of it on one task)."""
    join = dataclasses.replace(settings.join, window_ms=settings.simulate.window_ms)
    daemon = dataclasses.replace(settings.join_daemon, metrics_port=0)
    with EmbeddedBroker(port=free_port(), startup_timeout_s=30.0) as broker:
        rows = [_one(broker, settings, join, daemon, n) for n in histories]
    return {
        "benchmark": "join-recovery",
        "state_checkpoint_interval": daemon.state_checkpoint_interval,
        "max_poll_records": daemon.max_poll_records,
        "results": rows,
    }


def _one(
    broker: EmbeddedBroker,
    settings: Settings,
    join: JoinConfig,
    daemon_settings: JoinDaemonSettings,
    impressions: int,
) -> dict[str, Any]:
    per_day = settings.simulate.impressions_per_day
    config = dataclasses.replace(settings.simulate, days=math.ceil(impressions / per_day))
    options = broker.client_options
    topics = TopicSettings.tagged(f"recovery{impressions}", 1)
    ensure_topics(options, topics.all())
    sink = KafkaRecordSink(options, {IMPRESSIONS: topics.impressions, CLICKS: topics.clicks})
    written = 0
    for day in Simulator(config).run():
        for r in day.records:
            sink.write(r)
            written += 1
    sink.close()
    with tempfile.TemporaryDirectory(prefix="fmstream-bench-recovery-") as tmp:
        settings_ = dataclasses.replace(
            daemon_settings, group_id=f"g-{topics.impressions}", state_dir=Path(tmp) / "daemon"
        )
        metrics = JoinMetrics(CollectorRegistry())
        start = time.perf_counter()
        with open_daemon(options, topics, join, settings_, metrics, time.time) as d:
            consumed = 0
            while consumed < written:
                consumed += d.step()
        join_s = time.perf_counter() - start
        row = {"impressions": config.days * per_day, "records": written, "join_s": round(join_s, 1)}
        row |= _recoveries(options, topics, join, settings_, Path(tmp))
    log.info("bench_join_recovery %s", row)
    return row


def _recoveries(
    options: Any, topics: TopicSettings, join: JoinConfig, settings: JoinDaemonSettings, tmp: Path
) -> dict[str, Any]:
    io = open_io(options, topics, settings.group_id)
    config = settings.task_config(join)
    sources = {IMPRESSIONS: topics.impressions, CLICKS: topics.clicks}
    out: dict[str, Any] = {}
    try:
        for name, use in (("checkpoint", True), ("whole_history", False)):
            state = JoinState(tmp / name)
            try:
                done = recover(io, state, 0, config, sources, use_checkpoints=use)
            finally:
                state.close()
            out[f"recovery_from_{name}_s"] = round(done.seconds, 2)
            out[f"recovery_from_{name}_records_read"] = done.records
            out["pending_after_recovery"] = done.task.core.pending
    finally:
        io.close()
    return out
