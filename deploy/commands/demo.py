"""`fmstream demo`: the main job, offline on simulated traffic, no services needed.

It simulates the configured days (also written to files, with the truth) and
replays them as they are made: the joiner core, the configured models learning
every day but the last in one online pass, and the last day held out, scored by
the snapshot taken at the end of the day before, beside the Bayes-optimal score.
It is a replay of a `simulate --out` directory (OUT holds its reports and its
training metrics, metrics.prom), without reading the files back.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from deploy.batch.replay.inputs import OpenedInput, PeriodClock
from deploy.batch.replay.report import join_summary
from deploy.batch.replay.run import run_replay
from deploy.commands.common import SIMULATE_OUTPUT, SIMULATION, TRAIN, add_store_reuse
from deploy.runtime.errors import ConfigError
from deploy.settings.resolve import Option
from deploy.settings.tables import Settings
from stream.events import DAY_MS
from stream.files import JsonlRecordSink
from stream.logs.join_input import LogRecord
from stream.simulate import SimulationConfig, Simulator
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
    # Malformed records are part of the simulation, not a sign of a wrong log.
    demo = dataclasses.replace(
        settings,
        join=dataclasses.replace(
            settings.join,
            window_ms=sim.window_ms,
            allowed_lateness_ms=max(settings.join.allowed_lateness_ms, sim.jitter_ms),
        ),
        replay=dataclasses.replace(settings.replay, max_bad_share=1.0),
    )
    sink, truth = JsonlRecordSink(out), TruthWriter(out / "truth.csv")
    p_label: dict[str, float] = {}
    opened = OpenedInput(
        _simulated(sim, sink, truth, p_label),
        None,
        PeriodClock(DAY_MS, sim.start_ms),
        "simulated",
        lambda ids: np.array([p_label.get(i, np.nan) for i in ids], dtype=np.float64),
    )
    try:
        doc = run_replay(
            opened,
            "the simulator",
            demo,
            demo.train,
            out,
            reuse=args.store_reuse,
            learn_before=sim.days - 1,
        )
    finally:
        sink.close()
        truth.close()
    if doc["store_note"]:
        print(doc["store_note"])
    print(
        f"simulated {sim.days} days x {sim.impressions_per_day} impressions into {out}/; "
        f"trained on days 0-{sim.days - 2} with join window {demo.join.window_ms} ms"
    )
    print(format_holdout(doc, sim.days - 1), flush=True)
    return 0


def _simulated(
    sim: SimulationConfig, sink: JsonlRecordSink, truth: TruthWriter, p_label: dict[str, float]
) -> Iterator[LogRecord]:
    """The simulator's records as a replay's input, written to files as they pass; each
    day's true click probabilities are known before its records are joined."""
    line = 0
    for day in Simulator(sim).run():
        truth.write(day.truth)
        p_label.update(zip(day.truth.ids, day.truth.p_label.tolist(), strict=True))
        for r in day.records:
            sink.write(r)
            line += 1
            yield LogRecord(r.topic, r.key, r.value, r.ts, line, "the simulator")


def format_holdout(doc: dict[str, Any], day: int) -> str:
    """The demo's table: the held-out day per model, with progressive validation over
    the days learned and the training speed."""
    last = doc["periods"][-1]
    bayes = last["bayes"]
    rows = [
        f"next-day holdout: day {day} ({bayes['count']} impressions, {bayes['positives']} clicks)",
        f"{'model':<14} {'prog_auc':>8} {'auc':>7} {'logloss':>8} {'NE':>6} {'calib':>6} "
        f"{'train ex/s':>10}",
        _row("Bayes-optimal", None, bayes, None),
    ]
    models = {k: v for k, v in doc["overall"].items() if k != "Bayes-optimal"}
    ranked = sorted(models.items(), key=lambda kv: -last["models"][kv[0]]["holdout"]["auc"])
    for name, model in ranked:
        held = last["models"][name]["holdout"]
        rows.append(_row(name, model["progressive"], held, model["train_events_per_s"]))
    for name, model in ranked:
        if model.get("store_rows_after_eviction") is not None:
            evicted = model["store_evicted"]
            rows.append(
                f"store {name}: {model['store_rows_after_eviction']} rows after eviction "
                f"({evicted['ttl']} unseen past the TTL, {evicted['max_rows']} beyond the cap)"
            )
    rows += join_summary(doc)
    if doc["bad_rows"]["count"]:
        rows.append(f"malformed records: {doc['bad_rows']['count']}")
    return "\n".join(rows)


def _row(
    name: str, progressive: dict[str, Any] | None, m: dict[str, Any], speed: float | None
) -> str:
    prog = f"{progressive['auc']:>8.4f}" if progressive else f"{'':>8}"
    rate = f"{speed:>10.0f}" if speed is not None else f"{'':>10}"
    return (
        f"{name:<14} {prog} {m['auc']:>7.4f} {m['logloss']:>8.5f} "
        f"{m['normalized_entropy']:>6.3f} {m['calibration']:>6.3f} {rate}"
    )
