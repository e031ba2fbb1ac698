"""The offline run on simulated traffic: simulator -> joiner core -> encoder -> trainers.

Days before the holdout day are learned in one online pass, each batch
predicted before it is learned (progressive validation); the holdout day's
labeled events are only scored, after every earlier event has been learned
(next-day holdout, the paper's protocol for its Company* data).

Events are learned in impression-time order, each once its window has closed
(`stream.join.ordered.OrderedJoin` says why).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploy.batch.eviction import EvictionSchedule, Flushes
from deploy.batch.learners import FilterFactory, Learners, SourceFactory, progressive_step
from deploy.settings.tables import EvictionPolicy
from model.metrics import BinaryMetrics, StreamingMetrics, binary_metrics
from model.trainer import OnlineTrainer, TrainerConfig
from model.zoo import ModelConfig
from stream.errors import RecordError
from stream.events import DAY_MS, LabeledEvent
from stream.join.core import JoinConfig, JoinStats
from stream.join.ordered import OrderedJoin
from stream.simulate import DayTraffic, Record

log = logging.getLogger(__name__)


@dataclass
class ModelRun:
    config: ModelConfig
    trainer: OnlineTrainer | None = None
    progressive: StreamingMetrics = field(default_factory=StreamingMetrics)
    train_seconds: float = 0.0
    trained: int = 0
    holdout: BinaryMetrics | None = None
    evicted_ttl: int = 0
    evicted_max_rows: int = 0
    stored_rows: int | None = None


@dataclass(frozen=True)
class OfflineReport:
    holdout_day: int
    bayes: BinaryMetrics
    models: list[ModelRun]
    join: JoinStats
    malformed: int


class OfflineRun:
    def __init__(
        self,
        models: list[ModelConfig],
        trainer: TrainerConfig,
        join: JoinConfig,
        start_ms: int,
        holdout_day: int,
        batch_size: int = 1024,
        source_for: SourceFactory | None = None,
        filter_for: FilterFactory | None = None,
        eviction: EvictionPolicy | None = None,
    ) -> None:
        self.runs = [ModelRun(m) for m in models]
        self._learners = Learners(trainer, source_for, filter_for)
        self.join = OrderedJoin(join)
        self._start_ms = start_ms
        self._holdout_day = holdout_day
        self._batch_size = batch_size
        self._buffer: list[LabeledEvent] = []
        self._holdout: list[LabeledEvent] = []
        self.malformed = 0
        self._schedule = EvictionSchedule(eviction)

    def feed(self, records: Iterable[Record]) -> None:
        for r in records:
            try:
                released = self.join.feed(r.topic, r.value)
            except RecordError:
                self.malformed += 1
                continue
            for event in released:
                self._route(event)

    def _route(self, event: LabeledEvent) -> None:
        day = (event.ts - self._start_ms) // DAY_MS
        if day == self._holdout_day:
            self._holdout.append(event)
        elif day < self._holdout_day:
            self._buffer.append(event)
            if len(self._buffer) >= self._batch_size:
                self._learn(self._buffer)
                self._buffer = []

    def _learn(self, events: list[LabeledEvent]) -> None:
        batch, labels = self._learners.encode(events)
        newest = max(e.ts for e in events)
        for run in self.runs:
            if run.trainer is None:
                run.trainer = self._learners.new_trainer(run.config)
            probs, seconds = progressive_step(run.trainer, batch, labels, newest)
            run.progressive.update(labels, probs)
            run.train_seconds += seconds
            run.trained += len(labels)
        self._maybe_evict(newest)

    def _maybe_evict(self, now: int) -> None:
        if self._schedule.due(now):
            self._schedule.evict_all(
                ((r.config.name, r.trainer and r.trainer.source, r.trained, r) for r in self.runs),
                now,
            )

    def finish(self, truth: Callable[[list[str]], np.ndarray]) -> OfflineReport:
        for event in self.join.finish():
            self._route(event)
        if self._buffer:
            self._learn(self._buffer)
            self._buffer = []
        for run in self.runs:
            if run.trainer is not None and isinstance(run.trainer.source, Flushes):
                # The snapshot the holdout is scored with: every trained row, durably.
                run.trainer.source.flush({"trained_events": run.trained})
        events = sorted(self._holdout, key=lambda e: e.ts)
        labels = np.array([e.label for e in events], dtype=np.float32)
        for run in self.runs:
            assert run.trainer is not None, "no training data before the holdout day"
            probs = np.concatenate(
                [
                    run.trainer.predict_proba_many(self._learners.encode(events[i : i + 4096])[0])
                    for i in range(0, len(events), 4096)
                ]
            )
            run.holdout = binary_metrics(labels, probs)
        bayes = binary_metrics(labels, truth([e.id for e in events]))
        return OfflineReport(
            self._holdout_day, bayes, self.runs, self.join.core.stats, self.malformed
        )


def run_days(
    days: Iterable[DayTraffic], offline: OfflineRun, tee: Callable[[Record], Any]
) -> dict[str, float]:
    """Feeds every simulated day into the run (and `tee`); returns each impression's p_label."""
    p_label: dict[str, float] = {}
    for day in days:
        for r in day.records:
            tee(r)
        offline.feed(day.records)
        p_label.update(zip(day.truth.ids, day.truth.p_label.tolist(), strict=True))
        log.info(
            "day_replayed day=%d records=%d pending=%d",
            day.day,
            len(day.records),
            offline.join.core.pending,
        )
    return p_label


def format_report(report: OfflineReport) -> str:
    rows = [
        f"next-day holdout: day {report.holdout_day} "
        f"({report.bayes.count} impressions, {report.bayes.positives} clicks)",
        f"{'model':<14} {'prog_auc':>8} {'auc':>7} {'logloss':>8} {'NE':>6} {'calib':>6} "
        f"{'train ex/s':>10}",
    ]
    b = report.bayes
    rows.append(
        f"{'Bayes-optimal':<14} {'':>8} {b.auc:>7.4f} {b.logloss:>8.5f} "
        f"{b.normalized_entropy:>6.3f} {b.calibration:>6.3f} {'':>10}"
    )
    for run in sorted(report.models, key=lambda r: -(r.holdout.auc if r.holdout else 0)):
        m = run.holdout
        assert m is not None
        speed = run.trained / run.train_seconds if run.train_seconds else 0.0
        rows.append(
            f"{run.config.paper_name:<14} {run.progressive.auc:>8.4f} {m.auc:>7.4f} "
            f"{m.logloss:>8.5f} {m.normalized_entropy:>6.3f} {m.calibration:>6.3f} "
            f"{speed:>10.0f}"
        )
    for run in report.models:
        if run.stored_rows is not None:
            rows.append(
                f"store {run.config.paper_name}: {run.stored_rows} rows after eviction "
                f"({run.evicted_ttl} unseen past the TTL, {run.evicted_max_rows} beyond the cap)"
            )
    s = report.join
    rows.append(
        f"joined: {s.labels_positive + s.labels_negative} labels "
        f"({s.labels_positive} clicked), late clicks {s.late_clicks}, "
        f"orphan clicks {s.orphan_clicks}, duplicates {s.duplicate_impressions} "
        f"impressions / {s.duplicate_clicks} clicks, malformed {report.malformed}"
    )
    return "\n".join(rows)
