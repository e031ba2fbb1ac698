"""The trainer daemon: `labeled` in, a continuously trained model in its store.

Per batch: score it (progressive validation), learn it, move the position to
the batch's end. Between two steps, every `checkpoint_interval_s`, one atomic
write stores everything learned with that position (`checkpoint.save`); a
restart resumes from it, so no labeled event is learned twice or skipped. A
stop request finishes the step in hand, checkpoints and returns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from deploy.apps.train import checkpoint
from deploy.apps.train.checkpoint import Resumed
from deploy.apps.train.cutter import Positions
from deploy.apps.train.feed import Batch, Feed
from deploy.apps.train.metrics import Progressive, TrainMetrics
from deploy.apps.train.publish import Captured, Published, Publisher
from deploy.batch.eviction import EvictionSchedule
from deploy.batch.learners import progressive_step
from deploy.runtime.signals import StopRequested
from deploy.settings.features import schema_toml
from deploy.settings.train import EvictionPolicy, TrainDaemonSettings
from model.ctr_metrics import StreamingMetrics
from model.features import FeatureSchema
from model.trainer import OnlineTrainer, TrainerConfig
from model.zoo import ModelConfig
from store.admission import Admission
from store.cache import CachedEmbeddings
from stream.events import DAY_MS

log = logging.getLogger(__name__)
_TAKE_S = 0.2


class Closes(Protocol):
    def close(self) -> None: ...


class DeadLetterSink(Closes, Protocol):
    def flush(self) -> None: ...


@dataclass(frozen=True)
class TrainParts:
    """What a daemon is built from (`deploy.apps.train.clients.open_parts`); the daemon
    closes them when it stops."""

    feed: Feed
    source: CachedEmbeddings
    reader: Closes
    dead_letters: DeadLetterSink
    publisher: Publisher | None = None
    announcer: Closes | None = None


AdmissionFor = Callable[[FeatureSchema], Admission | None]


class TrainDaemon:
    def __init__(
        self,
        parts: TrainParts,
        model: ModelConfig,
        config: TrainerConfig,
        settings: TrainDaemonSettings,
        metrics: TrainMetrics,
        clock: Callable[[], float],
        resumed: Resumed,
        admission_for: AdmissionFor,
        eviction: EvictionPolicy | None = None,
    ) -> None:
        self._parts = parts
        self._model = model
        self._config = config
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._admission_for = admission_for
        self.positions: Positions = dict(resumed.positions)
        self.newest_ms = resumed.newest_ms
        self.schema = resumed.schema
        self.trainer: OnlineTrainer | None = None
        self._admission: Admission | None = None
        self._progressive = Progressive(settings.progressive_window)
        self._interval = StreamingMetrics()  # progressive, since the last snapshot
        self._publish_requested = threading.Event()
        self._next_checkpoint = clock() + settings.checkpoint_interval_s
        self._eviction = EvictionSchedule(eviction, resumed.evict_next_ms)
        self._evicting = resumed.evicting_ms
        self._dirty = False
        self._finisher = ThreadPoolExecutor(1, thread_name_prefix="fmstream-publish")
        self._pending: Future[Published] | None = None
        self._published_seen: int | None = None  # examples_seen at the last snapshot
        self._stack = ExitStack()
        if self.schema is not None:
            self._build(self.schema)
            assert self.trainer is not None
            checkpoint.restore(parts.source.store, self.trainer, self._admission)

    @property
    def feed(self) -> Feed:
        """The input thread (a test drives steps from it without `run`)."""
        return self._parts.feed

    def __enter__(self) -> TrainDaemon:
        parts = self._parts
        with ExitStack() as stack:
            stack.callback(parts.source.store.close)
            stack.callback(parts.dead_letters.close)
            if parts.announcer is not None:
                stack.callback(parts.announcer.close)
            stack.callback(parts.reader.close)
            stack.callback(parts.feed.stop)
            stack.callback(self._finisher.shutdown)  # before the announcer closes
            parts.feed.start()
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def run(self, stop: StopRequested) -> None:
        """Trains until `stop` is set, then checkpoints what it learned."""
        with self:
            if self._evicting is not None:  # interrupted by a crash: finished first
                self._evict(self._evicting)
            while not stop.is_set():
                batch = self._parts.feed.take(_TAKE_S)
                if batch is not None:
                    self.step(batch)
                if self._publish_requested.is_set():
                    self._publish_requested.clear()
                    self.publish("interval")
                if self._clock() >= self._next_checkpoint:
                    self.checkpoint()
            self.wait_published()
            self.checkpoint()

    def step(self, batch: Batch) -> None:
        cut = batch.cut
        self._metrics.dead(cut.dead)
        if batch.encoded is not None:
            if self.trainer is None:
                assert self._parts.feed.encoder is not None
                schema = self._parts.feed.encoder.schema
                self._build(schema)
                log.info("feature_schema (recorded in the store):\n%s", schema_toml(schema))
            assert self.trainer is not None
            ts = np.fromiter((e.ts for e in cut.events), np.int64, len(cut.events))
            if self.newest_ms is not None and int(ts.max()) // DAY_MS > self.newest_ms // DAY_MS:
                self.publish("day_end")  # the model as it was at the end of the day
            probs, seconds = progressive_step(
                self.trainer, batch.encoded, batch.labels, int(ts.max())
            )
            self._progressive.add(ts, batch.labels, probs)
            self._interval.update(batch.labels, probs)
            self.newest_ms = max(int(ts.max()), self.newest_ms or 0)
            self._metrics.step_seconds.observe(seconds)
            self._metrics.steps.labels(self._model.name).inc()
            self._metrics.examples.labels(self._model.name).inc(len(cut.events))
        self.positions.update(cut.after)
        self._dirty = self._dirty or bool(cut.after)
        if self.newest_ms is not None and self._eviction.due(self.newest_ms):
            self._evict(self.newest_ms)

    def checkpoint(self) -> None:
        """Writes everything learned so far with the position it reflects."""
        self._next_checkpoint = self._clock() + self._settings.checkpoint_interval_s
        self._export()
        if not self._dirty:
            return
        start = self._clock()
        # Dead letters of events the checkpoint moves past must be durable first.
        self._parts.dead_letters.flush()
        rows = checkpoint.save(self._parts.source, self.positions, self._times(), self._learned())
        self._dirty = False
        self._metrics.checkpoint_seconds.observe(self._clock() - start)
        self._metrics.checkpoint_rows.inc(rows)
        log.info(
            "checkpoint examples_seen=%d rows=%d positions=%s",
            self.trainer.examples_seen if self.trainer is not None else 0,
            rows,
            self.positions,
        )

    def _learned(self) -> tuple[OnlineTrainer, FeatureSchema, Admission | None] | None:
        if self.trainer is None or self.schema is None:
            return None
        return self.trainer, self.schema, self._admission

    def _times(self) -> dict[str, int | None]:
        return {
            "newest_ms": self.newest_ms,
            "evict_next_ms": self._eviction.next_ms,
            "evicting_ms": self._evicting,
        }

    def request_publish(self) -> None:
        """Asks for a snapshot between the next two steps (any thread may ask)."""
        self._publish_requested.set()

    def publish(self, trigger: str) -> Future[Published] | None:
        """Captures a snapshot (`Publisher.capture`) between two steps: the store's
        checkpoint and a copy of the rows changed since its last write, which the
        publishing thread writes into the snapshot, then checksums, promotes and
        announces it (the previous snapshot's first). None when nothing was learned,
        or, on an interval, nothing since the last snapshot: a copy would only push
        older snapshots out of retention while the stream is idle."""
        publisher, trainer, schema = self._parts.publisher, self.trainer, self.schema
        if publisher is None or trainer is None or schema is None:
            return None
        if trigger == "interval" and trainer.examples_seen == self._published_seen:
            return None
        self._published_seen = trainer.examples_seen
        self.wait_published()
        start = self._clock()
        checkpointed = checkpoint.state(self.positions, self._times(), self._learned())
        captured = publisher.capture(
            self._parts.source, checkpointed, trainer, schema, trigger, self._interval.result()
        )
        self._interval = StreamingMetrics()
        self._metrics.publish_pause_seconds.observe(self._clock() - start)
        self._pending = self._finisher.submit(self._finish, publisher, captured, start)
        return self._pending

    def wait_published(self) -> None:
        """Waits for the snapshot being finished; raises what failed it."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _finish(self, publisher: Publisher, captured: Captured, start: float) -> Published:
        done = publisher.finish(captured, lambda: self.newest_ms)
        self._metrics.published(done, self._clock() - start, captured.manifest["newest_ms"])
        log.info(
            "snapshot version=%d trigger=%s promoted=%s reasons=%s",
            done.version,
            captured.manifest["trigger"],
            done.promoted,
            done.reasons,
        )
        return done

    def _evict(self, now: int) -> None:
        """Drops stale and surplus rows (`store_ttl_hours`, `store_max_rows`) as of event
        time `now`, between two checkpoints: the first notes the eviction, so a restart
        after a crash in it finishes it (deleting is idempotent) before learning on."""
        self._evicting, self._dirty = now, True
        self.checkpoint()
        result = self._eviction.drop(self._model.name, self._parts.source, now)
        self._evicting, self._dirty = None, True
        self.checkpoint()
        self._metrics.evicted(result)

    def _build(self, schema: FeatureSchema) -> None:
        self.schema = schema
        self._admission = self._admission_for(schema)
        self.trainer = OnlineTrainer(
            self._model, len(schema.fields), self._config, self._parts.source, self._admission
        )

    def _export(self) -> None:
        m = self._metrics
        for partition, lag in self._parts.feed.lag.items():
            m.lag.labels(str(partition)).set(lag)
        m.broker_connected.set(self._parts.feed.connected)
        source = self._parts.source
        lookups = source.hits + source.misses
        if lookups:
            m.cache_hit_ratio.set(source.hits / lookups)
        if self.trainer is not None:
            m.bounded.labels(self._model.name).set(self.trainer.bounded_steps)
            m.progressive(self._progressive)
        if self._admission is not None:
            m.admitted(self._admission)
