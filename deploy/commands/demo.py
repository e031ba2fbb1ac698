"""`fmstream demo`: the main job on simulated traffic, no services needed.

It simulates the configured days to files and prints each day's traffic and
the best score any model can reach on it (the Bayes-optimal AUC and logloss).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from deploy.commands.common import SIMULATE_OUTPUT, SIMULATION
from deploy.commands.simulate import simulate
from deploy.config import Option
from deploy.settings import Settings
from deploy.simulate import format_days

NAME = "demo"
HELP = "run the main job offline: simulate traffic to files and report its Bayes-optimal scores"
OPTIONS: list[Option] = [*SIMULATION, *SIMULATE_OUTPUT]
DEFAULT_OUT = Path("runs/demo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No arguments beyond the configuration options."""


def run(settings: Settings, args: argparse.Namespace) -> int:
    output = settings.simulate_output
    if output.out is None:
        output = dataclasses.replace(output, out=DEFAULT_OUT)
        settings = dataclasses.replace(settings, simulate_output=output)
    summaries = simulate(settings)
    print(
        f"simulated {len(summaries)} days into {output.out}/ (impressions.jsonl, clicks.jsonl, "
        f"truth.csv, simulation.json)"
    )
    print(format_days(summaries), flush=True)
    return 0
