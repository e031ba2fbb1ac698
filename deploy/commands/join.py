"""`fmstream join`: the join daemon, until SIGTERM/SIGINT (finishes its batch, exits 0)."""

from __future__ import annotations

import argparse
import logging
import time

from deploy.apps.join.clients import open_daemon
from deploy.apps.join.metrics import JoinMetrics
from deploy.commands.common import KAFKA
from deploy.runtime.heap import settle_heap
from deploy.runtime.metrics_server import serve_metrics
from deploy.runtime.signals import stop_on_signals
from deploy.settings.resolve import Option
from deploy.settings.tables import Settings

NAME = "join"
HELP = "join impressions and clicks from Kafka into labeled events (a daemon)"
OPTIONS: list[Option] = [
    *KAFKA,
    Option("join.window_ms", "--window-ms", "attribution window: a click later than this is late"),
    Option(
        "join.allowed_lateness_ms",
        "--allowed-lateness-ms",
        "how far behind the newest event time a record may arrive and still count",
    ),
    Option(
        "join.orphan_grace_ms",
        "--orphan-grace-ms",
        "how long a click waits for its impression before it is an orphan (event time)",
    ),
    Option(
        "join.retention_ms",
        "--retention-ms",
        "how long labeled ids are remembered after their window, to catch duplicates",
    ),
    Option("join.max_pending", "--max-pending", "cap on waiting impressions per partition"),
    Option("join.group_id", "--group-id", "consumer group shared by the joiner instances"),
    Option("join.state_dir", "--state-dir", "local RocksDB state of this instance"),
    Option(
        "join.idle_timeout_s",
        "--idle-timeout",
        "seconds without records after which an input stops holding windows open",
    ),
    Option("join.metrics_port", "--metrics-port", "Prometheus metrics port (0: none)"),
    Option("join.max_poll_records", "--max-poll-records", "records per batch at most"),
    Option("join.max_record_bytes", "--max-record-bytes", "larger records are dead-lettered"),
    Option(
        "join.max_skew_hours",
        "--max-skew-hours",
        "event times this far behind the partition's newest, or ahead of it or of their "
        "broker timestamp, are dead-lettered",
    ),
    Option(
        "join.labeled_batch_max",
        "--labeled-batch-max",
        "labeled events per example batch at most (1: one plain event per record)",
    ),
    Option(
        "join.labeled_batch_bytes",
        "--labeled-batch-bytes",
        "bytes per example batch at most (a larger event is a batch of its own)",
    ),
    Option(
        "join.state_checkpoint_interval",
        "--state-checkpoint-interval",
        "changelog records between checkpoints of a partition's state",
    ),
    Option(
        "join.state_checkpoint_interval_s",
        "--state-checkpoint-interval-s",
        "seconds without a checkpoint after which a partition writes one",
    ),
    Option("topics.partitions", "--partitions", "partitions of the output topics it creates"),
]
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No arguments beyond the configuration options."""


def run(settings: Settings, args: argparse.Namespace) -> int:
    cfg = settings.join_daemon
    options = settings.kafka.client_options()
    registry = serve_metrics(cfg.metrics_port)
    with stop_on_signals() as stop:
        metrics = JoinMetrics(registry)
        daemon = open_daemon(options, settings.topics, settings.join, cfg, metrics, time.time)
        settle_heap()
        log.info(
            "joiner_started group=%s state_dir=%s metrics_port=%d",
            cfg.group_id,
            cfg.state_dir,
            cfg.metrics_port,
        )
        daemon.run(stop)
    log.info("joiner_stopped")
    return 0
