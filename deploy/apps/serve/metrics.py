"""The scorer's Prometheus metrics, summed over its worker processes.

Each worker writes its samples under `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's
multiprocess mode), so `/metrics` on any worker reports all of them: counters and
histograms summed, the snapshot gauges per live worker (`pid` label).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from deploy.apps.serve.snapshot import Loaded

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0)
_CANDIDATES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
_MEANS = (0.001, 0.003, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


class ServeMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.latency = Histogram(
            "fmstream_serve_request_seconds",
            "Request latency by endpoint and status",
            ["endpoint", "status"],
            buckets=_LATENCY,
            registry=registry,
        )
        self.candidates = Histogram(
            "fmstream_serve_candidates",
            "Candidates per scored request",
            buckets=_CANDIDATES,
            registry=registry,
        )
        self.mean_prediction = Histogram(
            "fmstream_serve_mean_prediction",
            "Mean click probability of a scored request",
            buckets=_MEANS,
            registry=registry,
        )
        self.rejected = Counter(
            "fmstream_serve_rejected_requests_total",
            "Requests answered 4xx, by reason",
            ["reason"],
            registry=registry,
        )
        self.unseen = Counter(
            "fmstream_serve_unseen_ids_total",
            "Feature ids the served snapshot never learned (initial or shared rows), by field",
            ["field"],
            registry=registry,
        )
        self.cache = Counter(
            "fmstream_serve_cache_lookups_total",
            "Row lookups by result",
            ["result"],
            registry=registry,
        )
        self.swaps = Counter(
            "fmstream_serve_swaps_total", "Snapshots swapped in", registry=registry
        )
        self.swap_failures = Counter(
            "fmstream_serve_swap_failures_total",
            "Snapshots that failed to load or warm, by stage",
            ["stage"],
            registry=registry,
        )
        self.version = Gauge(
            "fmstream_serve_snapshot_version",
            "Snapshot version served",
            multiprocess_mode="liveall",
            registry=registry,
        )
        self.created = Gauge(
            "fmstream_serve_snapshot_created_seconds",
            "Wall time the served snapshot was taken (its age: time() - this)",
            multiprocess_mode="liveall",
            registry=registry,
        )
        self._counted: tuple[int, int, int] = (0, 0, 0)  # id(source), hits, misses

    def swapped(self, loaded: Loaded) -> None:
        self.swaps.inc()
        self.version.set(loaded.version)
        self.created.set(float(loaded.manifest.get("created_s", time.time())))

    def swap_failed(self, reason: str) -> None:
        self.swap_failures.labels(reason).inc()

    def scored(self, loaded: Loaded, scores: np.ndarray, unseen: np.ndarray) -> None:
        self.candidates.observe(len(scores))
        self.mean_prediction.observe(float(scores.mean()))
        for f in np.flatnonzero(unseen).tolist():
            self.unseen.labels(loaded.encoder.fields[f].name).inc(int(unseen[f]))
        source = loaded.source
        key, hits, misses = self._counted
        if key != id(source):
            hits = misses = 0
        self.cache.labels("hit").inc(source.hits - hits)
        self.cache.labels("miss").inc(source.misses - misses)
        self._counted = (id(source), source.hits, source.misses)


def exposition() -> bytes:
    """Every worker's metrics in the text format (this process's alone outside
    multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


def forget_dead_workers() -> None:
    """Drops the live-gauge files of worker processes that are gone (a killed worker's
    replacement calls this), so their snapshot gauges stop being reported."""
    root = os.environ.get(MULTIPROC_ENV)
    if not root:
        return
    named = (re.search(r"_(\d+)\.db$", p.name) for p in Path(root).glob("*.db"))
    pids = {int(m.group(1)) for m in named if m}
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, root)  # type: ignore[no-untyped-call]
        except PermissionError:
            continue
