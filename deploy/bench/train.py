"""Training and encoding throughput on Criteo-shaped events (13 counts, 26 categoricals)."""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deploy.batch.replay.inputs import CRITEO_SCHEMA
from deploy.wiring import cached_source
from model.features import EncodedBatch, FeatureEncoder
from model.trainer import OnlineTrainer, TrainerConfig, resolve_device, row_layout
from model.zoo import PAPER_NAMES, ModelConfig
from store.row_store import RowStore

# Distinct values of C1..C26 in the Criteo Kaggle release (7 days, 45M rows).
CRITEO_CARDINALITY = (
    1460, 583, 10_131_227, 2_202_608, 305, 24, 12_517, 633, 3, 93_145, 5_683, 8_351_593,
    3_194, 27, 14_992, 5_461_306, 10, 5_652, 2_173, 4, 7_046_547, 18, 15, 286_181, 105,
    142_572,
)  # fmt: skip


def criteo_like_events(n: int, seed: int = 0) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Events with Criteo's shape: 13 counts with gaps, 26 hashed categoricals whose
    Zipf-distributed values are capped at each field's real cardinality."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.lognormal(1.5, 1.5, (n, 13))).astype(float)
    counts[rng.random((n, 13)) < 0.2] = np.nan
    ranks = rng.zipf(1.1, (n, 26)) % np.array(CRITEO_CARDINALITY)
    cats = (ranks * 2654435761 % (1 << 32)).astype(np.int64)
    events = []
    for row_i, row_c in zip(counts.tolist(), cats.tolist(), strict=True):
        f: dict[str, Any] = {f"I{j + 1}": v for j, v in enumerate(row_i) if v == v}
        f.update({f"C{j + 1}": format(v, "08x") for j, v in enumerate(row_c)})
        events.append(f)
    labels = (rng.random(n) < 0.25).astype(np.float32)
    return events, labels


class Matmul:
    """fp32 [m, k] @ [k, n] on fixed operands, timed on demand."""

    def __init__(self, m: int, k: int, n: int) -> None:
        self.a, self.b = torch.randn(m, k), torch.randn(k, n)
        self.flops = 2.0 * m * k * n

    def gflops(self, seconds: float = 0.0, reps: int = 3) -> float:
        """GFLOP/s over at least `reps` products and `seconds`, after one to warm up."""
        self.a @ self.b
        count, start = 0, time.perf_counter()
        while count < reps or time.perf_counter() - start < seconds:
            self.a @ self.b
            count += 1
        return self.flops * count / (time.perf_counter() - start) / 1e9


def matmul_gflops(batch: int = 1024, dim: int = 400, seconds: float = 1.0) -> dict[str, float]:
    """Measured fp32 matmul throughput: at the DNN's own shapes and at a large square."""
    return {
        "dnn_shape": Matmul(batch, dim, dim).gflops(seconds),
        "square_2048": Matmul(2048, 2048, 2048).gflops(seconds),
    }


def best_window(probe: Matmul, windows: int = 3) -> float:
    """The best of a few 0.1 s windows: the ceiling the shared machine offered just then
    (its speed drifts by tens of percent within a minute)."""
    return max(probe.gflops(seconds=0.1) for _ in range(windows))


def bench_encode(
    events: list[dict[str, Any]], batch: int = 4096, repeat: int = 3
) -> dict[str, Any]:
    enc = FeatureEncoder(CRITEO_SCHEMA)
    rates = []
    for _ in range(repeat + 1):  # the first pass also warms numpy and the allocator up
        start = time.perf_counter()
        for i in range(0, len(events), batch):
            enc.encode(events[i : i + batch])
        rates.append(len(events) / (time.perf_counter() - start))
    return {
        "fields": len(CRITEO_SCHEMA.fields),
        "cold_events_per_s": round(rates[0]),
        "warm_events_per_s_median": round(statistics.median(rates[1:])),
    }


@dataclass(frozen=True)
class Target:
    """Where a benchmark trains: the device, and the rows in RocksDB behind a
    `cache_rows` cache (`store`) or in memory."""

    device: str = "cpu"
    store: bool = False
    cache_rows: int = 1_000_000


def bench_model(
    name: str,
    batches: list[tuple[EncodedBatch, np.ndarray]],
    probe: Matmul,
    warmup: int = 3,
    max_logit_step: float = TrainerConfig.max_logit_step,
    target: Target = Target(),
) -> dict[str, Any]:
    """One timed run; each step is paired with a `probe` matmul timed right after it.
    Every run groups its batches' ids afresh (a batch caches its grouping)."""
    with tempfile.TemporaryDirectory(prefix="fmstream-bench-train-") as tmp:
        return _bench_model(name, batches, probe, warmup, max_logit_step, target, Path(tmp))


def _bench_model(
    name: str,
    batches: list[tuple[EncodedBatch, np.ndarray]],
    probe: Matmul,
    warmup: int,
    max_logit_step: float,
    target: Target,
    tmp: Path,
) -> dict[str, Any]:
    batches = [(dataclasses.replace(b), y) for b, y in batches]
    # FNN is timed in its DNN phase, past the FM pre-training.
    config = ModelConfig(name=name, fnn_pretrain_examples=0)
    trainer_config = TrainerConfig(device=target.device, max_logit_step=max_logit_step)
    source = None
    if target.store:
        layout = row_layout(config, trainer_config)
        store = RowStore(tmp / "rows", layout.width)
        device = str(resolve_device(target.device))
        source = cached_source(store, layout, 0, target.cache_rows, device)
    trainer = OnlineTrainer(config, len(CRITEO_SCHEMA.fields), trainer_config, source)
    try:
        return _timed(trainer, batches, probe, warmup)
    finally:
        if source is not None:
            source.store.close()


def _timed(
    trainer: OnlineTrainer,
    batches: list[tuple[EncodedBatch, np.ndarray]],
    probe: Matmul,
    warmup: int,
) -> dict[str, Any]:
    for b, y in batches[:warmup]:
        trainer.learn_many(b, y)
    size = batches[0][0].batch_size
    forward = trainer.model.dense_flops_per_example()
    flops = 3 * forward * size  # backward costs about twice the forward: 3x in all
    times, shares = [], []
    for b, y in batches[warmup:]:
        start = time.perf_counter()
        trainer.learn_many(b, y)
        times.append(time.perf_counter() - start)
        shares.append(flops / times[-1] / 1e9 / probe.gflops())
    per_step = statistics.median(times)
    return {
        "examples_per_s": size / per_step,
        "forward_flops": forward,
        "gflops": flops / per_step / 1e9,
        "interleaved_share": statistics.median(shares),
        "rows_touched": len(trainer.source) if isinstance(trainer.source, Sized) else None,
    }


def bench_model_runs(
    name: str,
    batches: list[tuple[EncodedBatch, np.ndarray]],
    repeat: int,
    target: Target = Target(),
) -> dict[str, Any]:
    """`repeat` timed runs of one model, each between two best-window ceiling measurements
    and with a matmul probe after every step."""
    size = batches[0][0].batch_size
    probe = Matmul(size, 400, 400)
    runs, unbounded = [], []
    for _ in range(repeat):
        before = best_window(probe)
        run = bench_model(name, batches, probe, target=target)
        run["ceiling"] = max(before, best_window(probe))
        run["best_window_share"] = run["gflops"] / run["ceiling"]
        runs.append(run)
        # The same steps without max_logit_step's two sample forwards, beside them.
        plain = bench_model(name, batches, probe, max_logit_step=0.0, target=target)
        unbounded.append(plain["examples_per_s"])

    def median(key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    return {
        "model": PAPER_NAMES[name],
        "batch": size,
        "examples_per_s": round(median("examples_per_s")),
        "examples_per_s_runs": [round(r["examples_per_s"]) for r in runs],
        "dense_forward_flops_per_example": runs[0]["forward_flops"],
        "dense_train_gflops_per_s": round(median("gflops"), 2),
        "share_of_matmul_ceiling": round(median("interleaved_share"), 3),
        "share_runs": [round(r["interleaved_share"], 3) for r in runs],
        "best_window_ceiling_gflops": round(median("ceiling"), 1),
        "share_of_best_window": round(median("best_window_share"), 3),
        "rows_touched": runs[0]["rows_touched"],
        "unbounded_examples_per_s": round(statistics.median(unbounded)),
        "bounded_vs_unbounded": round(median("examples_per_s") / statistics.median(unbounded), 3),
    }
