"""`fmstream bench`: throughput benchmarks that print JSON (targets are met here, not in tests)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from deploy.bench_train import (
    CRITEO_SCHEMA,
    bench_encode,
    bench_model,
    criteo_like_events,
    matmul_gflops,
)
from deploy.commands.common import SIMULATION
from deploy.config import Option
from deploy.settings import Settings
from deploy.simulate import run_simulation
from model.features import FeatureEncoder
from model.zoo import PAPER_NAMES, canonical_name
from stream.files import JsonlRecordSink
from stream.simulate.truth import TruthWriter

log = logging.getLogger(__name__)
NAME = "bench"
HELP = "run a benchmark and print its figures as JSON"
OPTIONS: list[Option] = [*SIMULATION]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["simulate", "train", "encode"], help="what to benchmark")
    parser.add_argument("--repeat", type=int, default=3, help="runs to take the median of")
    parser.add_argument(
        "--models",
        default=",".join(PAPER_NAMES),
        help="train: comma-separated models (default: the paper's nine)",
    )
    parser.add_argument("--batches", default="1024,4096", help="train: batch sizes")
    parser.add_argument(
        "--steps", type=int, default=12, help="train: timed steps per model and batch"
    )


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


def bench_train(args: argparse.Namespace) -> dict[str, Any]:
    """Examples/s per model at the paper's settings, against the machine's matmul ceiling."""
    models = [canonical_name(m) for m in args.models.split(",") if m]
    sizes = [int(b) for b in args.batches.split(",") if b]
    steps = args.steps + 3
    events, labels = criteo_like_events(max(sizes) * steps)
    encoder = FeatureEncoder(CRITEO_SCHEMA)
    ceiling = matmul_gflops()
    results = []
    for size in sizes:
        batches = [
            (encoder.encode(events[i : i + size]), labels[i : i + size])
            for i in range(0, size * steps, size)
        ]
        for name in models:
            row = bench_model(name, batches)
            row["share_of_matmul_ceiling"] = round(
                row["dense_train_gflops_per_s"] / ceiling["dnn_shape"], 3
            )
            log.info("bench_train %s", row)
            results.append(row)
    return {
        "benchmark": "train",
        "source": "in-memory",
        "settings": "k=10, 400-400-400, relu (tanh for IPNN), dropout keep 0.5, Adam",
        "matmul_gflops": {k: round(v, 1) for k, v in ceiling.items()},
        "torch_threads": torch.get_num_threads(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "results": results,
    }


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.what == "simulate":
        result = bench_simulate(settings, max(1, args.repeat))
    elif args.what == "encode":
        events, _ = criteo_like_events(50_000)
        result = {
            "benchmark": "encode",
            **bench_encode(events, repeat=max(1, args.repeat)),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
    else:
        result = bench_train(args)
    print(json.dumps(result, indent=2), flush=True)
    return 0
