"""The replay protocol: learn period by period, score each period with the snapshot
taken at the end of the one before (next-period holdout), then learn it.

Labeled events arrive in impression-time order. At a period boundary every live
trainer is flushed and frozen (`Freezer`); every batch of the new period is
scored by that frozen copy (holdout), by the live trainer (progressive
validation), and only then learned. The snapshot records the newest event time
it learned, so the holdout never seeing its own period is checked, not assumed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from deploy.batch.eviction import EvictionSchedule
from deploy.batch.learners import FilterFactory, Learners, SourceFactory, progressive_step
from deploy.batch.replay.freeze import Freezer
from deploy.settings.train import EvictionPolicy
from model.ctr_metrics import Scores
from model.features import EncodedBatch, FeatureSchema
from model.trainer import OnlineTrainer, TrainerConfig
from model.zoo import ModelConfig
from stream.events import LabeledEvent

Truth = Callable[[list[str]], np.ndarray]


@dataclass
class Track:
    """One model through the replay."""

    config: ModelConfig
    live: OnlineTrainer | None = None
    frozen: OnlineTrainer | None = None
    holdout: dict[int, Scores] = field(default_factory=dict)
    progressive: dict[int, Scores] = field(default_factory=dict)
    trained: int = 0
    seconds: float = 0.0
    evicted_ttl: int = 0
    evicted_max_rows: int = 0
    stored_rows: int | None = None
    # Periods whose scoring snapshot was still pre-training (FNN: it was the FM).
    pretraining: set[int] = field(default_factory=set)


@dataclass
class PeriodInfo:
    period: int
    start_ms: int
    events: int
    # The newest event time the scoring snapshot had learned (None: no snapshot yet).
    snapshot_newest_ms: int | None


class PeriodReplay:
    def __init__(
        self,
        models: list[ModelConfig],
        trainer: TrainerConfig,
        batch_size: int,
        period_of: Callable[[int], int],
        period_start: Callable[[int], int],
        freezer: Freezer,
        source_for: SourceFactory | None = None,
        filter_for: FilterFactory | None = None,
        truth: Truth | None = None,
        schema: FeatureSchema | None = None,
        eviction: EvictionPolicy | None = None,
        on_period: Callable[[], None] | None = None,
        learn_before: int | None = None,
    ) -> None:
        """`on_period` is called whenever a period is complete (before the next one's
        first event), so a caller can report as it goes. Periods from `learn_before` on
        are only scored by the snapshot before them, never learned (a held-out day)."""
        self._learn_before = learn_before
        self.tracks = [Track(m) for m in models]
        self._on_period = on_period
        self._learners = Learners(trainer, source_for, filter_for, schema)
        self._batch_size = batch_size
        self._period_of = period_of
        self._period_start = period_start
        self._freezer = freezer
        self._truth = truth
        self._eviction = EvictionSchedule(eviction)
        self._buffer: list[LabeledEvent] = []
        self._period: int | None = None
        self._newest_learned: int | None = None
        self.periods: dict[int, PeriodInfo] = {}
        self.bayes: dict[int, Scores] = {}
        self.events = 0
        self.out_of_order = 0

    @property
    def schema(self) -> FeatureSchema | None:
        """The feature schema the models learn with (None before the first batch)."""
        encoder = self._learners.encoder
        return encoder.schema if encoder is not None else None

    def add(self, event: LabeledEvent) -> None:
        period = self._period_of(event.ts)
        if self._period is not None and period < self._period:
            # Logged later than its period ended: the current snapshot has not seen it
            # either, so it is scored and learned with the current period.
            self.out_of_order += 1
            period = self._period
        if period != self._period:
            self._flush()
            if self._period is not None and self._on_period is not None:
                self._on_period()
            self._roll(period)
        self._buffer.append(event)
        if len(self._buffer) >= self._batch_size:
            self._flush()

    def finish(self) -> None:
        self._flush()
        self._freezer.close()

    def _roll(self, period: int) -> None:
        self._period = period
        for track in self.tracks:
            if track.live is not None:
                position = {
                    "period": period - 1,
                    "newest_ms": self._newest_learned,
                    "trained_events": track.trained,
                }
                track.frozen = self._freezer.freeze(track.config.name, track.live, position)
                if track.frozen.model.pretraining:
                    track.pretraining.add(period)
        self.periods[period] = PeriodInfo(
            period, self._period_start(period), 0, self._newest_learned
        )

    def _flush(self) -> None:
        if not self._buffer:
            return
        events, self._buffer = self._buffer, []
        assert self._period is not None
        batch, labels = self._learners.encode(events)
        period = self._period
        self.periods[period].events += len(events)
        if self._truth is not None:
            self.bayes.setdefault(period, Scores()).add(labels, self._truth([e.id for e in events]))
        newest = max(e.ts for e in events)
        learn = self._learn_before is None or period < self._learn_before
        for track in self.tracks:
            self._step(track, period, batch, labels, newest, learn)
        self.events += len(events)
        if learn:
            self._newest_learned = max(newest, self._newest_learned or newest)
        if self._eviction.due(newest):
            self._eviction.evict_all(
                ((t.config.name, t.live and t.live.source, t.trained, t) for t in self.tracks),
                newest,
            )

    def _step(
        self,
        track: Track,
        period: int,
        batch: EncodedBatch,
        labels: np.ndarray,
        newest: int,
        learn: bool,
    ) -> None:
        if track.live is None:
            track.live = self._learners.new_trainer(track.config)
        if track.frozen is not None:
            track.holdout.setdefault(period, Scores()).add(
                labels, track.frozen.predict_proba_many(batch)
            )
        if not learn:
            return
        probs, seconds = progressive_step(track.live, batch, labels, newest)
        track.progressive.setdefault(period, Scores()).add(labels, probs)
        track.seconds += seconds
        track.trained += len(labels)
