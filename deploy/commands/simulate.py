"""`fmstream simulate`: write simulated impressions and clicks to the broker or to files."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from deploy.apps.simulate.driver import DaySummary, Pacer, RecordSink, format_days, run_simulation
from deploy.commands.common import KAFKA, SIMULATE_OUTPUT, SIMULATION
from deploy.runtime.signals import stop_on_signals
from deploy.settings.resolve import Option
from deploy.settings.tables import Settings
from stream.events import CLICKS, IMPRESSIONS
from stream.files import JsonlRecordSink
from stream.kafka.admin import ensure_topics
from stream.kafka.producer import KafkaRecordSink
from stream.simulate.truth import TruthWriter

NAME = "simulate"
HELP = "write simulated impressions and clicks (with known click probabilities)"
OPTIONS: list[Option] = [*SIMULATION, *SIMULATE_OUTPUT, *KAFKA]
DEFAULT_BROKER_TRUTH = Path("simulation-truth.csv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No arguments beyond the configuration options."""


def run(settings: Settings, args: argparse.Namespace) -> int:
    summaries = simulate(settings)
    print(format_days(summaries), flush=True)
    return 0


def simulate(settings: Settings) -> list[DaySummary]:
    """Runs the configured simulation into files or Kafka; returns the per-day summary."""
    output = settings.simulate_output
    sink: RecordSink
    if output.out is not None:
        sink = JsonlRecordSink(output.out)
        truth_path = output.truth or output.out / "truth.csv"
    else:
        options = settings.kafka.client_options()
        topics = settings.topics
        ensure_topics(
            options, {topics.impressions: topics.partitions, topics.clicks: topics.partitions}
        )
        sink = KafkaRecordSink(options, {IMPRESSIONS: topics.impressions, CLICKS: topics.clicks})
        truth_path = output.truth or DEFAULT_BROKER_TRUTH
    truth = TruthWriter(truth_path)
    pacer = Pacer(output.speed) if output.speed > 0 else None
    try:
        with stop_on_signals() as stop:
            summaries = run_simulation(settings.simulate, sink, truth, stop, pacer)
    finally:
        truth.close()
        sink.close()
    if output.out is not None:
        _write_manifest(output.out / "simulation.json", settings, summaries, truth_path)
    return summaries


def _write_manifest(
    path: Path, settings: Settings, summaries: list[DaySummary], truth_path: Path
) -> None:
    doc = {
        "config": settings.simulate.as_dict(),
        "truth": str(truth_path),
        "days": [asdict(s) for s in summaries],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
