"""`fmstream train`: the trainer daemon, until SIGTERM/SIGINT (finishes its step,
checkpoints, exits 0)."""

from __future__ import annotations

import argparse
import logging

from deploy.apps.train.clients import open_daemon, the_model
from deploy.apps.train.metrics import TrainMetrics
from deploy.apps.train.schedule import scheduled
from deploy.commands.common import KAFKA, TRAIN
from deploy.runtime.metrics_server import serve_metrics
from deploy.runtime.signals import stop_on_signals
from deploy.settings.resolve import Option
from deploy.settings.tables import Settings

# The daemon keeps its rows in RocksDB and learns one model (--model).
_NOT_HERE = {"train.models", "train.store"}
NAME = "train"
HELP = "train one model on the labeled topic, checkpointing into its store (a daemon)"
OPTIONS: list[Option] = [
    *KAFKA,
    *(o for o in TRAIN if o.key not in _NOT_HERE),
    Option(
        "train.model",
        "--model",
        "the model this process trains: lr, fm, fnn, ipnn, opnn, pnn_star, lr_dnn, fm_dnn, deepfm",
    ),
    Option(
        "train.max_batch_wait_ms",
        "--max-batch-wait-ms",
        "a batch is cut at --batch-size events or after this long, whichever comes first",
    ),
    Option(
        "train.checkpoint_interval_s",
        "--checkpoint-interval-s",
        "seconds between checkpoints (rows, dense state and input position in one write)",
    ),
    Option(
        "train.max_skew_hours",
        "--max-skew-hours",
        "events this far behind the stream's newest event time, or ahead of their broker "
        "timestamp, are dead-lettered",
    ),
    Option(
        "train.progressive_window",
        "--progressive-window",
        "events in the recent window of progressive validation",
    ),
    Option("train.max_poll_records", "--max-poll-records", "records per poll at most"),
    Option("train.metrics_port", "--metrics-port", "Prometheus metrics port (0: none)"),
    Option(
        "train.snapshot_dir",
        "--snapshot-dir",
        "where snapshots are published, one directory per model (default STORE_DIR/snapshots)",
    ),
    Option(
        "train.publish_interval_s",
        "--publish-interval-s",
        "seconds between snapshots (0: only at event-day ends)",
    ),
    Option(
        "train.gate_min_calibration",
        "--gate-min-calibration",
        "refuse a snapshot predicting less than this share of the interval's clicks",
    ),
    Option(
        "train.gate_max_calibration",
        "--gate-max-calibration",
        "refuse a snapshot predicting more than this multiple of the interval's clicks",
    ),
    Option(
        "train.gate_max_ne_regression",
        "--gate-max-ne-regression",
        "refuse a snapshot whose interval NE is this much above the last promoted ones'",
    ),
    Option("train.keep_snapshots", "--keep-snapshots", "snapshots kept (besides LATEST)"),
    Option(
        "train.keep_days",
        "--keep-days",
        "day-end snapshots of this many last event days are kept as well",
    ),
]
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No arguments beyond the configuration options."""


def run(settings: Settings, args: argparse.Namespace) -> int:
    cfg = settings.train_daemon
    registry = serve_metrics(cfg.metrics_port)
    model = the_model(settings)
    with stop_on_signals() as stop:
        daemon = open_daemon(settings, TrainMetrics(registry, model.name))
        log.info(
            "trainer_started model=%s store=%s resume=%s",
            model.name,
            settings.train.store_dir,
            daemon.positions,
        )
        with scheduled(daemon, cfg):
            daemon.run(stop)
    log.info("trainer_stopped positions=%s", daemon.positions)
    return 0
