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

from deploy.apps.simulate.driver import run_simulation
from deploy.batch.replay.inputs import CRITEO_SCHEMA
from deploy.bench.join import bench_join
from deploy.bench.join_recovery import bench_join_recovery
from deploy.bench.publish import bench_publish
from deploy.bench.quality import bench_quality
from deploy.bench.replay import bench_replay
from deploy.bench.serve import bench_serve
from deploy.bench.store import bench_store, bench_training
from deploy.bench.train import (
    Target,
    bench_encode,
    bench_model_runs,
    criteo_like_events,
    matmul_gflops,
)
from deploy.bench.train_stream import bench_freshness, bench_train_stream
from deploy.commands.common import SIMULATION
from deploy.runtime.errors import ConfigError
from deploy.settings.resolve import Option
from deploy.settings.tables import BenchSettings, Settings
from model.features import FeatureEncoder
from model.trainer import resolve_device
from model.zoo import canonical_name
from stream.files import JsonlRecordSink
from stream.simulate.truth import TruthWriter

log = logging.getLogger(__name__)
NAME = "bench"
HELP = "run a benchmark and print its figures as JSON"
OPTIONS: list[Option] = [
    *(o for o in SIMULATION if o.key != "simulate.days"),
    Option("bench.simulate_days", "--days", "simulate: days to simulate per run"),
    Option("bench.repeat", "--repeat", "runs to take the median of"),
    Option("bench.replay_rows", "--replay-rows", "replay: rows of the Criteo-format log"),
    Option("bench.replay_models", "--replay-models", "replay: comma-separated models"),
    Option(
        "bench.replay_small_cache_rows",
        "--replay-small-cache-rows",
        "replay: the row cache of the bounded-memory run (below the log's ids)",
    ),
    Option("bench.quality_seeds", "--seeds", "quality: seeds per log (FMSTREAM_TRAIN_* apply)"),
    Option("topics.partitions", "--partitions", "join: partitions of the benchmark's topics"),
    Option("bench.models", "--bench-models", "train: comma-separated models"),
    Option("train.device", "--device", "train: auto (CUDA when present), cpu, cuda or cuda:N"),
    Option("train.store", "--store", "train: memory, or rocksdb (behind --cache-rows)"),
    Option("train.cache_rows", "--cache-rows", "train: rows of the hot-row cache"),
    Option("bench.batches", "--batches", "train: comma-separated batch sizes"),
    Option("bench.steps", "--steps", "train: timed steps per model and batch size"),
    Option("bench.store_rows", "--store-rows", "store, publish: rows in the RocksDB store"),
    Option("bench.stream_events", "--stream-events", "train-stream: labeled events"),
    Option(
        "bench.freshness_interval_s",
        "--freshness-interval-s",
        "freshness: the trainer's publish interval",
    ),
    Option("bench.freshness_s", "--freshness-s", "freshness: seconds of traffic"),
    Option("bench.freshness_rate", "--freshness-rate", "freshness: labeled events per second"),
    Option(
        "bench.cache_rows", "--bench-cache-rows", "store, publish: rows the hot-row cache holds"
    ),
    Option(
        "bench.batch_unique_ids",
        "--batch-unique-ids",
        "store: unique ids of one batch (4,096 events x 39 fields has ~60k)",
    ),
    Option("bench.serve_s", "--serve-s", "serve: seconds of each load phase"),
    Option("bench.serve_swaps", "--serve-swaps", "serve: snapshots promoted under load"),
    Option("bench.serve_swap_interval_s", "--serve-swap-interval-s", "serve: seconds apart"),
    Option("bench.serve_train_events", "--serve-train-events", "serve: events the model learns"),
    Option(
        "bench.recovery_history",
        "--history",
        "join-recovery: comma-separated impressions of history per partition",
    ),
    Option(
        "join.state_checkpoint_interval",
        "--state-checkpoint-interval",
        "join-recovery: changelog records between checkpoints",
    ),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "what",
        choices=[
            "simulate",
            "train",
            "train-stream",
            "freshness",
            "publish",
            "encode",
            "store",
            "join",
            "join-recovery",
            "replay",
            "quality",
            "serve",
        ],
        help="what to benchmark",
    )


class _Never:
    def is_set(self) -> bool:
        return False


def bench_simulate(settings: Settings, repeat: int) -> dict[str, Any]:
    """The simulator writing JSONL files and the truth file, as `simulate --out` does."""
    config = dataclasses.replace(settings.simulate, days=settings.bench.simulate_days)
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
        "python": sys.version.split()[0],
    }


def bench_train(cfg: BenchSettings, repeat: int, target: Target) -> dict[str, Any]:
    """Examples/s per model at the paper's settings, against the machine's matmul ceiling."""
    try:
        models = [canonical_name(m) for m in cfg.models.split(",") if m]
        sizes = [int(b) for b in cfg.batches.split(",") if b]
    except ValueError as exc:
        raise ConfigError(f"bench.models / bench.batches: {exc}") from exc
    steps = cfg.steps + 3
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
            row = bench_model_runs(name, batches, repeat, target)
            log.info("bench_train %s", row)
            results.append(row)
    return {
        "benchmark": "train",
        "device": str(resolve_device(target.device)),
        "source": f"RocksDB, {target.cache_rows}-row cache" if target.store else "in-memory",
        "settings": "k=10, 400-400-400, relu (tanh for IPNN), dropout keep 0.5, Adam",
        "matmul_gflops_at_start": {k: round(v, 1) for k, v in ceiling.items()},
        "ceiling": "share_of_matmul_ceiling: each step against a [batch, 400] @ [400, 400] "
        "matmul probe timed right after it (median over steps, then over --repeat runs); "
        "share_of_best_window: against the best of six 0.1 s windows of that matmul "
        "just before and after each run",
        "torch_threads": torch.get_num_threads(),
        "results": results,
    }


def run(settings: Settings, args: argparse.Namespace) -> int:
    repeat = max(1, settings.bench.repeat)
    cfg = settings.bench
    if args.what == "simulate":
        result = bench_simulate(settings, repeat)
    elif args.what == "encode":
        events, _ = criteo_like_events(50_000)
        result = {"benchmark": "encode", **bench_encode(events, repeat=repeat)}
    elif args.what == "replay":
        result = bench_replay(cfg.replay_rows, cfg.replay_models, cfg.replay_small_cache_rows)
    elif args.what == "quality":
        result = bench_quality(cfg.quality_seeds)
    elif args.what == "join":
        result = bench_join(settings, repeat, settings.topics.partitions)
    elif args.what == "join-recovery":
        history = [int(n) for n in cfg.recovery_history.split(",") if n.strip()]
        result = bench_join_recovery(settings, history)
    elif args.what == "train-stream":
        result = bench_train_stream(settings, cfg.stream_events)
    elif args.what == "freshness":
        result = bench_freshness(
            settings, cfg.freshness_interval_s, cfg.freshness_s, cfg.freshness_rate
        )
    elif args.what == "publish":
        result = bench_publish(cfg.store_rows, cfg.cache_rows)
    elif args.what == "serve":
        result = bench_serve(
            cfg.serve_s, cfg.serve_swaps, cfg.serve_swap_interval_s, cfg.serve_train_events
        )
    elif args.what == "store":
        result = {
            **bench_store(cfg.store_rows, cfg.cache_rows, cfg.batch_unique_ids),
            **bench_training(min(cfg.cache_rows, 1_000_000)),
        }
    else:
        train = settings.train
        target = Target(train.device, train.store == "rocksdb", train.cache_rows)
        result = bench_train(cfg, repeat, target)
    # The machine's load while it ran: the figures mean little without it.
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2), flush=True)
    return 0
