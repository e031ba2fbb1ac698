"""Prometheus metrics of a training run: store eviction, admission, the row cache.

A batch run (demo, replay) writes them once, at the end, in the text format
that node_exporter's textfile collector picks up; a daemon serves the same
registry on its metrics port.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile

from deploy.batch.replay.protocol import Track
from store.admission import Admission
from store.cache import CachedEmbeddings


class TrainingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.trained = Counter(
            "fmstream_trained_events", "labeled events learned", ["model"], registry=registry
        )
        self.evicted = Counter(
            "fmstream_store_rows_evicted",
            "rows deleted from the parameter store, by reason (ttl, max_rows)",
            ["model", "reason"],
            registry=registry,
        )
        self.stored = Gauge(
            "fmstream_store_rows",
            "rows in the store at the last eviction",
            ["model"],
            registry=registry,
        )
        self.admission = Counter(
            "fmstream_admission_ids",
            "id occurrences looked up while learning, by decision (admitted, deferred to the "
            "field's shared row)",
            ["model", "decision"],
            registry=registry,
        )
        self.bounded = Counter(
            "fmstream_bounded_steps",
            "training steps whose embedding-row update was scaled down to train.max_logit_step",
            ["model"],
            registry=registry,
        )
        self.cache = Counter(
            "fmstream_cache_lookups",
            "row lookups in the hot-row cache, by result (hit, miss)",
            ["model", "result"],
            registry=registry,
        )

    def record(self, runs: list[Track]) -> None:
        """Adds a finished run's counts."""
        for run in runs:
            name = run.config.name
            self.trained.labels(name).inc(run.trained)
            self.evicted.labels(name, "ttl").inc(run.evicted_ttl)
            self.evicted.labels(name, "max_rows").inc(run.evicted_max_rows)
            if run.stored_rows is not None:
                self.stored.labels(name).set(run.stored_rows)
            trainer = run.live
            if trainer is None:
                continue
            self.bounded.labels(name).inc(trainer.bounded_steps)
            if isinstance(trainer.id_filter, Admission):
                self.admission.labels(name, "admitted").inc(trainer.id_filter.admitted)
                self.admission.labels(name, "deferred").inc(trainer.id_filter.deferred)
            if isinstance(trainer.source, CachedEmbeddings):
                self.cache.labels(name, "hit").inc(trainer.source.hits)
                self.cache.labels(name, "miss").inc(trainer.source.misses)

    def write(self, path: Path) -> None:
        write_to_textfile(str(path), self.registry)
