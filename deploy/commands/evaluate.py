"""`fmstream evaluate`: next-day holdout and served performance of published snapshots."""

from __future__ import annotations

import argparse
import itertools
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack

import numpy as np

from deploy.apps.evaluate.daemon import DaemonConfig, Evaluator
from deploy.apps.evaluate.days import DayTable
from deploy.apps.evaluate.metrics import EvaluateMetrics
from deploy.apps.evaluate.models import opened_models
from deploy.apps.evaluate.outputs import day_number, write_day, write_report
from deploy.apps.evaluate.sources import until_caught_up
from deploy.batch.replay.inputs import truth_lookup
from deploy.batch.replay.protocol import Truth
from deploy.batch.replay.run import joined_log
from deploy.commands.common import KAFKA
from deploy.runtime.errors import ConfigError
from deploy.runtime.metrics_server import serve_metrics
from deploy.runtime.signals import stop_on_signals
from deploy.settings.resolve import Option
from deploy.settings.tables import Settings
from model.ctr_metrics import event_day
from stream.events import LabeledEvent
from stream.kafka.labeled_reader import LabeledReader

NAME = "evaluate"
HELP = "judge published snapshots: next-day holdout and served performance, per day and model"
_FLAGS = {
    "snapshot_dir": ("--snapshots", "the trainer's snapshot directory (a subdirectory per model)"),
    "models": ("--models", "comma-separated models to judge (each a subdirectory of --snapshots)"),
    "out": ("--out", "where <model>/<date>.json, report.md and report.png are written"),
    "truth": ("--truth", "a simulator truth file (truth.csv): adds the Bayes-optimal row"),
    "log": ("--log", "with --once: read a `simulate --out` directory instead of the topic"),
    "day": ("--day", "with --once: the day judged (2026-01-02, or days since 1970-01-01)"),
    "once": ("--once", "judge the one day --day names and exit"),
    "cache_rows": ("--cache-rows", "embedding rows each open snapshot keeps in its read cache"),
    "state": (
        "--state",
        "the evaluator's position and open days (default OUT/.state/evaluator.npz)",
    ),
    "metrics_port": ("--metrics-port", "serve Prometheus metrics on this port (0: off)"),
    "poll_s": ("--poll-s", "seconds between checks for a trainer's newer snapshots"),
    "max_wait_s": (
        "--max-wait-s",
        "a trainer this long without a newer snapshot is no longer waited for",
    ),
}
OPTIONS: list[Option] = [
    *KAFKA,
    *(Option(f"evaluate.{key}", flag, text) for key, (flag, text) in _FLAGS.items()),
]
_CHUNK = 8_192
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # every flag is a setting


def run(settings: Settings, args: argparse.Namespace) -> int:
    del args
    cfg = settings.evaluate
    truth: Truth | None = truth_lookup(cfg.truth) if cfg.truth else None
    names = cfg.model_names()
    window = settings.join.window_ms
    with opened_models(
        cfg.snapshot_dir, names, window, cfg.cache_rows, required=cfg.once
    ) as models:
        if cfg.once:
            _once(settings, DayTable(models, truth))
        else:
            _daemon(settings, DayTable(models, truth))
    return 0


def _daemon(settings: Settings, table: DayTable) -> None:
    cfg = settings.evaluate
    config = DaemonConfig(
        cfg.out, cfg.state_path(), settings.join.window_ms, cfg.poll_s, cfg.max_wait_s
    )
    metrics = EvaluateMetrics(serve_metrics(cfg.metrics_port))
    with ExitStack() as stack:
        stop = stack.enter_context(stop_on_signals())
        reader = LabeledReader(settings.kafka.client_options(), settings.topics.labeled)
        stack.callback(reader.close)
        evaluator = Evaluator(config, reader, table, metrics, time.monotonic)
        log.info(
            "evaluating models=%s from %s (state %s, %d days written)",
            cfg.models,
            settings.topics.labeled,
            config.state_path,
            len(evaluator.progress.closed),
        )
        evaluator.run(stop)


def _once(settings: Settings, table: DayTable) -> None:
    cfg = settings.evaluate
    if not cfg.day:
        raise ConfigError("--once needs --day: the day judged (2026-01-02 or a day number)")
    try:
        day = day_number(cfg.day)
    except ValueError as exc:
        raise ConfigError(f"--day {cfg.day!r} is neither a date nor a day number") from exc
    skipped: Counter[str] = Counter()
    if cfg.log is not None:
        opened, events = joined_log(cfg.log, settings, settings.train.seed)
        table.truth = table.truth or opened.truth
        batches: Iterable[list[LabeledEvent]] = _chunks(events)
    else:
        reader = LabeledReader(settings.kafka.client_options(), settings.topics.labeled)
        reader.seek({})
        batches = _closing(until_caught_up(reader, skipped), reader)
    for batch in batches:
        ts = np.fromiter((e.ts for e in batch), np.int64, len(batch))
        table.add([batch[i] for i in np.flatnonzero(event_day(ts) == day).tolist()])
    for model in table.models:
        row = table.result(day, model.name) | {"skipped_records": dict(skipped)}
        write_day(cfg.out, model.name, day, row)
    write_report(cfg.out)


def _chunks(events: Iterable[LabeledEvent]) -> Iterator[list[LabeledEvent]]:
    it = iter(events)
    while chunk := list(itertools.islice(it, _CHUNK)):
        yield chunk


def _closing(
    batches: Iterator[list[LabeledEvent]], reader: LabeledReader
) -> Iterator[list[LabeledEvent]]:
    try:
        yield from batches
    finally:
        reader.close()
