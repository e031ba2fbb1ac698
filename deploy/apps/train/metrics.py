"""Prometheus metrics of the trainer daemon, and its progressive validation.

Progressive validation scores each batch before learning it: per event day, and
over a sliding window of the most recent events, as AUC, logloss, normalized
entropy and calibration (mean prediction over observed rate).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections import deque

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from deploy.apps.train.publish import Published
from model.ctr_metrics import BinaryMetrics, GroupedMetrics, StreamingMetrics, event_day
from store.admission import Admission
from store.row_store import Eviction

_QUALITY = ("auc", "logloss", "normalized_entropy", "calibration")


class Progressive:
    """Scores before learning: per event day, and over the last `window` events."""

    def __init__(self, window: int, keep_days: int = 3) -> None:
        self.days = GroupedMetrics()
        self._window = window
        self._keep_days = keep_days
        self._recent: deque[StreamingMetrics] = deque()
        self._in_recent = 0

    def add(self, ts: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> None:
        self.days.update(event_day(ts), labels, probs)
        for day in sorted(self.days.groups, key=lambda d: int(str(d)))[: -self._keep_days]:
            del self.days.groups[day]
        part = StreamingMetrics()
        part.update(labels, probs)
        self._recent.append(part)
        self._in_recent += part.count
        while len(self._recent) > 1 and self._in_recent - self._recent[0].count >= self._window:
            self._in_recent -= self._recent.popleft().count

    def recent(self) -> BinaryMetrics:
        total = StreamingMetrics()
        for part in self._recent:
            total = total.merge(part)
        return total.result()


class TrainMetrics:
    def __init__(self, registry: CollectorRegistry, model: str) -> None:
        self.registry = registry
        self.model = model
        r = registry
        self.examples = Counter(
            "fmstream_train_examples", "labeled events learned", ["model"], registry=r
        )
        self.steps = Counter("fmstream_train_steps", "training steps", ["model"], registry=r)
        self.dead_letters = Counter(
            "fmstream_train_dead_letters",
            "labeled records or events sent to the dead-letter topic, by reason",
            ["reason"],
            registry=r,
        )
        self.lag = Gauge(
            "fmstream_train_input_lag",
            "labeled records between the trainer's position and the high watermark",
            ["partition"],
            registry=r,
        )
        self.broker_connected = Gauge(
            "fmstream_train_broker_connected",
            "1 while the labeled reader holds a broker connection, else 0",
            registry=r,
        )
        self.step_seconds = Histogram(
            "fmstream_train_step_seconds", "score-then-learn time of one batch", registry=r
        )
        self.checkpoint_seconds = Histogram(
            "fmstream_train_checkpoint_seconds", "time of one checkpoint", registry=r
        )
        self.checkpoint_rows = Counter(
            "fmstream_train_checkpoint_rows", "embedding rows written by checkpoints", registry=r
        )
        self.quality = Gauge(
            "fmstream_train_progressive",
            "progressive validation (scored before learning) over the recent window and the "
            "current event day, by metric",
            ["model", "span", "metric"],
            registry=r,
        )
        self.cache_hit_ratio = Gauge(
            "fmstream_train_cache_hit_ratio", "hot-row cache hits over lookups", registry=r
        )
        self.bounded = Gauge(
            "fmstream_train_bounded_steps",
            "steps whose row update was scaled down to train.max_logit_step",
            ["model"],
            registry=r,
        )

        self._publishing(r)
        self._store(r)

    def _store(self, r: CollectorRegistry) -> None:
        self.evictions = Counter(
            "fmstream_train_store_rows_evicted",
            "rows deleted from the store by eviction, by reason (ttl, max_rows)",
            ["reason"],
            registry=r,
        )
        self.stored_rows = Gauge(
            "fmstream_train_store_rows", "rows in the store after the last eviction", registry=r
        )
        self.admission = Counter(
            "fmstream_train_admission_ids",
            "id occurrences looked up while learning, by decision (admitted, deferred to the "
            "field's shared row)",
            ["decision"],
            registry=r,
        )
        self._admission_seen = {"admitted": 0, "deferred": 0}

    def _publishing(self, r: CollectorRegistry) -> None:
        self.publish_seconds = Histogram(
            "fmstream_train_publish_seconds",
            "time of one publish (checkpoint, snapshot, gate, promotion)",
            registry=r,
        )
        self.publish_pause_seconds = Histogram(
            "fmstream_train_publish_pause_seconds",
            "time one publish held training up (checkpoint and snapshot capture)",
            registry=r,
        )
        self.snapshot_version = Gauge(
            "fmstream_train_snapshot_version", "the newest promoted snapshot", registry=r
        )
        self.snapshot_event_time = Gauge(
            "fmstream_train_snapshot_event_time_seconds",
            "newest event time the newest promoted snapshot learned",
            registry=r,
        )
        self.gate_refusals = Counter(
            "fmstream_train_gate_refusals",
            "snapshots the publish gate refused, by reason",
            ["reason"],
            registry=r,
        )

    def published(self, done: Published, seconds: float, newest_ms: int | None) -> None:
        self.publish_seconds.observe(seconds)
        if done.promoted:
            self.snapshot_version.set(done.version)
            if newest_ms is not None:
                self.snapshot_event_time.set(newest_ms / 1000)
        for reason in done.reasons:
            self.gate_refusals.labels(reason.split(" ")[0]).inc()

    def evicted(self, eviction: Eviction) -> None:
        self.evictions.labels("ttl").inc(eviction.expired)
        self.evictions.labels("max_rows").inc(eviction.trimmed)
        self.stored_rows.set(eviction.remaining)

    def admitted(self, admission: Admission) -> None:
        """Counts what `admission` decided since the last call."""
        for decision, total in (("admitted", admission.admitted), ("deferred", admission.deferred)):
            self.admission.labels(decision).inc(total - self._admission_seen[decision])
            self._admission_seen[decision] = total

    def dead(self, reasons: Tally[str]) -> None:
        for reason, n in reasons.items():
            self.dead_letters.labels(reason).inc(n)

    def progressive(self, progressive: Progressive) -> None:
        spans = {"recent": progressive.recent()}
        days = progressive.days.results()
        if days:
            spans["day"] = days[max(days, key=lambda d: int(str(d)))]
        for span, result in spans.items():
            for name in _QUALITY:
                self.quality.labels(self.model, span, name).set(getattr(result, name))
