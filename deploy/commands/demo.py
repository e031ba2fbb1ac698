"""`fmstream demo`: the main job, offline on simulated traffic, no services needed.

It simulates the configured days (also written to files, with the truth), joins
impressions and clicks with the joiner core, trains the configured models in
one online pass over every day but the last, and prints their next-day holdout
table on the last day beside the Bayes-optimal score. Its training metrics
(store eviction, admission, cache) land in OUT/metrics.prom.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from deploy.batch.metrics import TrainingMetrics
from deploy.batch.offline import OfflineRun, format_report, run_days
from deploy.commands.common import SIMULATE_OUTPUT, SIMULATION, TRAIN, add_store_reuse
from deploy.runtime.errors import ConfigError
from deploy.settings.resolve import Option
from deploy.settings.tables import Settings
from deploy.wiring import admission_for, embedding_source, prepare_store
from stream.files import JsonlRecordSink
from stream.simulate import DayTraffic, Simulator
from stream.simulate.truth import TruthWriter

NAME = "demo"
HELP = "run the main job offline: simulate, join, train, report the next-day holdout"
OPTIONS: list[Option] = [*SIMULATION, *SIMULATE_OUTPUT, *TRAIN]
DEFAULT_OUT = Path("runs/demo")
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_reuse(parser)


def run(settings: Settings, args: argparse.Namespace) -> int:
    sim = settings.simulate
    if sim.days < 2:
        raise ConfigError("simulate.days must be >= 2 for the demo: one to learn, one to hold out")
    out = settings.simulate_output.out or DEFAULT_OUT
    # The join window is the simulated world's; lateness covers its delivery jitter.
    join = dataclasses.replace(
        settings.join,
        window_ms=sim.window_ms,
        allowed_lateness_ms=max(settings.join.allowed_lateness_ms, sim.jitter_ms),
    )
    offline = OfflineRun(
        settings.train.model_configs(),
        settings.train.trainer_config(),
        join,
        start_ms=sim.start_ms,
        holdout_day=sim.days - 1,
        batch_size=settings.train.batch_size,
        source_for=lambda model, layout: embedding_source(
            settings.train, layout, model.name, out / "store"
        ),
        filter_for=lambda fields: admission_for(settings.train, fields),
        eviction=settings.train.eviction(),
    )
    store_note = prepare_store(settings.train, out / "store", args.store_reuse)
    if store_note:
        print(store_note, flush=True)
    sink, truth = JsonlRecordSink(out), TruthWriter(out / "truth.csv")
    try:
        simulator = Simulator(sim)
        days = _tee_truth(simulator.run(), truth)
        p_label = run_days(days, offline, sink.write)
    finally:
        sink.close()
        truth.close()
    report = offline.finish(lambda ids: np.array([p_label[i] for i in ids]))
    print(
        f"simulated {sim.days} days x {sim.impressions_per_day} impressions into {out}/; "
        f"trained on days 0-{sim.days - 2} with join window {join.window_ms} ms"
    )
    print(format_report(report), flush=True)
    metrics = TrainingMetrics(CollectorRegistry())
    metrics.record(report.models)
    metrics.write(out / "metrics.prom")
    return 0


def _tee_truth(days: Iterator[DayTraffic], truth: TruthWriter) -> Iterator[DayTraffic]:
    for day in days:
        truth.write(day.truth)
        yield day
