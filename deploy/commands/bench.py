"""`fmstream bench`: throughput benchmarks that print JSON (targets are met here, not in tests)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from deploy.commands.common import SIMULATION
from deploy.config import Option
from deploy.settings import Settings
from deploy.simulate import run_simulation
from stream.files import JsonlRecordSink
from stream.simulate.truth import TruthWriter

NAME = "bench"
HELP = "run a benchmark and print its figures as JSON"
OPTIONS: list[Option] = [*SIMULATION]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["simulate"], help="what to benchmark")
    parser.add_argument("--repeat", type=int, default=3, help="runs to take the median of")


class _Never:
    def is_set(self) -> bool:
        return False


def bench_simulate(settings: Settings, repeat: int) -> dict[str, Any]:
    """The simulator writing JSONL files and the truth file, as `simulate --out` does."""
    config = settings.simulate
    if "FMSTREAM_SIMULATE_DAYS" not in os.environ and config.days == 8:
        config = dataclasses.replace(config, days=2)
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="fmstream-bench-") as tmp:
            sink = JsonlRecordSink(Path(tmp))
            truth = TruthWriter(Path(tmp) / "truth.csv")
            wall, cpu = time.perf_counter(), time.process_time()
            summaries = run_simulation(config, sink, truth, _Never())
            sink.close()
            truth.close()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            size = sum(p.stat().st_size for p in Path(tmp).iterdir())
        impressions = sum(s.counts["impressions"] for s in summaries)
        runs.append(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "impressions": impressions,
                "records": sink.sent,
                "bytes": size,
            }
        )
    wall = statistics.median(r["wall_s"] for r in runs)
    cpu = statistics.median(r["cpu_s"] for r in runs)
    return {
        "benchmark": "simulate",
        "days": config.days,
        "impressions": runs[0]["impressions"],
        "records": runs[0]["records"],
        "bytes": runs[0]["bytes"],
        "repeat": repeat,
        "median_wall_s": round(wall, 3),
        "median_cpu_s": round(cpu, 3),
        "impressions_per_s": round(runs[0]["impressions"] / wall),
        "impressions_per_cpu_s": round(runs[0]["impressions"] / cpu),
        "records_per_s": round(runs[0]["records"] / wall),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
    }


def run(settings: Settings, args: argparse.Namespace) -> int:
    result = bench_simulate(settings, max(1, args.repeat))
    print(json.dumps(result, indent=2), flush=True)
    return 0
