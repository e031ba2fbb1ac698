"""The join daemon: impressions and clicks in, labeled events out, effectively once.

Per batch (one poll), for every partition that moved:
  1. the task joins its records; its state changes, progress and outputs become
     one changelog entry;
  2. the entries are written to the changelog and acknowledged — the commit
     point;
  3. the outputs are sent; they are acknowledged while the next batch is read
     and joined, before its entry is written, and their offsets become the
     marks of that entry;
  4. once the outputs have landed, the entries are applied to the local RocksDB
     state in one batch;
  5. input offsets are committed to the group (for lag; positions come from
     the state).
A crash anywhere leaves either no entry (the batch is read again) or an entry
whose outbox recovery completes: it reads the changelog past the local state,
looks in the output partitions (from the marks) for the entry's sequence
numbers, and sends only the missing ones. A partition that moves to another
instance is recovered the same way from the changelog. Any failed send is
handled by the same recovery, after a backoff.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from deploy.apps.join.metrics import JoinMetrics
from deploy.apps.join.parts import JoinParts
from deploy.apps.join.recovery import SentOutputs, recover, write_checkpoint
from deploy.runtime.signals import StopRequested
from deploy.settings.tables import JoinDaemonSettings, TopicSettings
from stream.errors import BrokerError, JoinStateError, PartitionFencedError, RecordError
from stream.events import CLICKS, IMPRESSIONS
from stream.join.core import JoinConfig
from stream.join.records import Entry, InRecord
from stream.join.task import JoinTask

log = logging.getLogger(__name__)
_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
# After being fenced, how long to wait for the rebalance that follows before
# claiming the partitions again regardless (longer than any session timeout).
_FENCED_WAIT_S = 60.0
# Batches per transaction of a partition's producer under load: commits are
# round trips, and transactions only fence.
_BATCHES_PER_TXN = 16


class JoinDaemon:
    """Used as a context manager (or through `run`): entering subscribes to the inputs,
    leaving closes every part, also when entering fails half-way."""

    def __init__(
        self,
        parts: JoinParts,
        topics: TopicSettings,
        join: JoinConfig,
        settings: JoinDaemonSettings,
        metrics: JoinMetrics,
        clock: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._config = settings.task_config(join)
        self._topic_of = {IMPRESSIONS: topics.impressions, CLICKS: topics.clicks}
        self._logical = {topic: logical for logical, topic in self._topic_of.items()}
        self._consumer = parts.consumer
        self._io = parts.io
        self._state = parts.state
        self._stack = ExitStack()
        self.tasks: dict[int, JoinTask] = {}
        self._unrecovered: dict[int, Exception] = {}
        self._fenced_at: float | None = None
        self._uncommitted = 0  # batches written since the transactions were committed
        # The last batch's outputs on their way, and its entries with their offsets.
        self._sent: tuple[SentOutputs, list[tuple[Entry, int]]] | None = None
        # Wall times, for the idle timeout: per partition and input, of its last record;
        # per partition, since when it has been active (its first record after being
        # idle, or its recovery), and the event time after its last record.
        self._last_record: dict[tuple[int, str], float] = {}
        self._active_since: dict[int, float] = {}
        self._last_activity: dict[int, tuple[float, int]] = {}
        # Per partition: changelog records since its last checkpoint, and its wall time.
        self._since_checkpoint: dict[int, tuple[int, float]] = {}

    def __enter__(self) -> JoinDaemon:
        with ExitStack() as stack:
            stack.callback(self._state.close)
            stack.callback(self._io.close)
            stack.callback(self._consumer.close)
            try:
                self._consumer.subscribe(list(self._logical), listener=_Listener(self))
            except KafkaError as exc:
                raise BrokerError(f"cannot subscribe to {list(self._logical)}: {exc}") from exc
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the consumer, the I/O and the state (in that order); idempotent."""
        self._stack.close()

    def run(self, stop: StopRequested) -> None:
        """Joins batch after batch until `stop` is set, then closes its parts."""
        with self:
            self._loop(stop)

    def _loop(self, stop: StopRequested) -> None:
        failures = 0
        while not stop.is_set():
            try:
                self.step()
                failures = 0
            except BrokerError as exc:
                delay = _BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)]
                failures += 1
                log.warning("join_batch_failed error=%s retry_in_s=%.1f", exc, delay)
                stop.wait(delay)
                self._recover_all()

    def step(self) -> int:
        """One poll and its commit; returns the records read."""
        self._retry_recovery()
        try:
            polled = self._consumer.poll(timeout_ms=200)
        except KafkaError as exc:
            raise BrokerError(f"polling the inputs: {exc}") from exc
        self._retry_recovery()
        by_partition: dict[int, list[InRecord]] = defaultdict(list)
        for tp, records in polled.items():
            topic = self._logical[tp.topic]
            by_partition[tp.partition].extend(
                InRecord(topic, tp.partition, r.offset, r.key, r.value, r.timestamp)
                for r in records
            )
        now = self._clock()
        batch = []
        for p, task in self.tasks.items():
            records = by_partition.get(p, [])
            # Impressions first within a poll: their clicks then find them waiting.
            records.sort(key=lambda r: r.topic != IMPRESSIONS)
            resumed = bool(records) and self._resume(p, now)
            outs = task.process(records, resumed)
            if records:
                for topic in {r.topic for r in records}:
                    self._last_record[(p, topic)] = now
                self._mark_activity(p, task, now)
            outs += self._idle(p, task, now)
            if records or outs or task.labels_waiting:
                batch.append((task, outs))
        try:
            if batch:
                self._commit(batch)
            else:
                self._settle()
            self._checkpoint(now)
            # An idle step commits whatever is open (a recovery's resends, a
            # checkpoint): a transaction left open would be aborted by the broker.
            self._uncommitted += 1 if batch else 0
            if not batch or self._uncommitted >= _BATCHES_PER_TXN:
                self._io.commit()
                self._uncommitted = 0
        except PartitionFencedError as exc:
            self._fenced(exc, now)
        self._metrics.observe(self.tasks)
        self._observe_lag(now)
        return sum(len(v) for v in by_partition.values())

    def _mark_activity(self, p: int, task: JoinTask, now: float) -> None:
        if task.core.newest is not None:
            self._last_activity[p] = (now, task.core.newest)

    def _resume(self, p: int, now: float) -> bool:
        """Whether partition p was idle (or never active) until now: its inputs' silence
        then counts from now, not from before the lull."""
        dormant = p not in self._active_since or all(
            self._silent(p, logical, now) for _, logical in self._inputs(p)
        )
        if dormant:
            self._active_since[p] = now
        return dormant

    def _silent(self, p: int, logical: str, now: float) -> bool:
        since = max(self._last_record.get((p, logical), 0.0), self._active_since.get(p, now))
        return now - since >= self._settings.idle_timeout_s

    def _idle(self, p: int, task: JoinTask, now: float) -> list[Any]:
        """An input silent for the idle timeout while the partition is active stops
        holding the watermark back: its event time moves to the newest seen. When both
        are silent, the windows and waiting clicks that the wall time since the last
        record would close are closed, but event time stays where the records put it.
        Silent means caught up as well: an input whose records are still on the broker
        (slow fetches after a broker stall, a busy machine) is behind, not idle, and
        moving its event time on would close windows its clicks are on the way to."""
        activity = self._last_activity.get(p)
        if activity is None:
            return []
        quiet = [
            logical
            for tp, logical in self._inputs(p)
            if self._silent(p, logical, now) and self._caught_up(tp)
        ]
        if len(quiet) == 2:
            wall, event_ts = activity
            return task.close_idle(event_ts + int((now - wall) * 1000))
        if quiet:
            return task.advance_to(activity[1], quiet)
        return []

    def _inputs(self, p: int) -> list[tuple[TopicPartition, str]]:
        return [(TopicPartition(topic, p), logical) for logical, topic in self._topic_of.items()]

    def _caught_up(self, tp: TopicPartition) -> bool:
        """Whether everything the broker last reported for tp has been read; unknown
        (no fetch answered yet) is not caught up."""
        end = self._consumer.highwater(tp)
        if end is None:
            return False
        position = self._consumer.position(tp, timeout_ms=0)
        return position is not None and position >= end

    def _commit(self, batch: list[tuple[JoinTask, list[Any]]]) -> None:
        self._settle()
        entries = [task.entry(outs) for task, outs in batch]
        offsets = self._io.write_entries(entries)
        sent = self._io.send_outputs({e.partition: e.outbox for e in entries})
        self._sent = (sent, list(zip(entries, offsets, strict=True)))
        commits = {}
        for task, _ in batch:
            count, wall = self._since_checkpoint.get(task.partition, (0, self._clock()))
            self._since_checkpoint[task.partition] = (count + 1, wall)
            for topic, logical in self._logical.items():
                if logical in task.offsets:
                    tp = TopicPartition(topic, task.partition)
                    commits[tp] = OffsetAndMetadata(task.offsets[logical], "", -1)
        try:
            self._consumer.commit_async(commits)
        except KafkaError as exc:
            log.warning("offset_commit_failed error=%s", exc)

    def _settle(self) -> None:
        """Waits for the last batch's outputs, sent while this batch was read and
        joined, then applies its entries to the local state. Recovery completes the
        outbox of a partition's last entry only, and reads only what the local state
        lacks: so the outputs must land before the next changelog record, and before
        their entry is in the state. Their offsets become the next entries' marks."""
        if self._sent is None:
            return
        (sent, written), self._sent = self._sent, None
        landed = sent.wait()
        for p, marks in landed.items():
            if p in self.tasks:
                self.tasks[p].marks.update(marks)
        self._state.apply([(e, offset) for e, offset in written if e.partition in landed])

    def _checkpoint(self, now: float) -> None:
        """Writes a checkpoint for each task that has written `state_checkpoint_interval`
        records since its last, or not written one for `state_checkpoint_interval_s`
        (so retention never deletes a partition's last one, even when it is idle)."""
        every, every_s = (
            self._settings.state_checkpoint_interval,
            self._settings.state_checkpoint_interval_s,
        )
        for p, task in self.tasks.items():
            count, wall = self._since_checkpoint.get(p, (0, now))
            due = count >= every or now - wall >= every_s
            if due and task.between_entries:
                self._settle()
                write_checkpoint(self._io, self._state, task)
                self._since_checkpoint[p] = (0, now)
                self._metrics.checkpoints.inc()

    def _observe_lag(self, now: float) -> None:
        marks = [t.core.watermark for t in self.tasks.values()]
        known = [m for m in marks if m is not None]
        if known:
            self._metrics.watermark_lag.set(max(0.0, now - min(known) / 1000))
        lag = 0
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            position = self._consumer.position(tp) if end is not None else None
            if end is not None and position is not None:
                lag += max(0, end - position)
        self._metrics.consumer_lag.set(lag)

    def assign(self, partitions: list[int]) -> None:
        """Recovers newly assigned partitions. Runs inside poll (the rebalance callback),
        where kafka-python would swallow an error: a partition that fails is paused and
        retried by the next step instead, and a fatal error is raised from there."""
        now = self._clock()
        self._fenced_at = None
        for p in partitions:
            if p in self.tasks:
                self._seek(self.tasks[p])
                continue
            try:
                task = self._recover(p)
            except Exception as exc:
                log.warning("join_recovery_failed partition=%d error=%r", p, exc)
                self._unrecovered[p] = exc
                self._consumer.pause(*self._input_partitions(p))
                continue
            self._unrecovered.pop(p, None)
            self.tasks[p] = task
            self._metrics.recoveries.inc()
            if task.core.newest is not None:
                self._active_since[p] = now
                self._mark_activity(p, task, now)
            self._seek(task)
            self._consumer.resume(*self._input_partitions(p))

    def revoke(self, partitions: list[int]) -> None:
        for p in partitions:
            self.tasks.pop(p, None)
            self._unrecovered.pop(p, None)
            self._since_checkpoint.pop(p, None)
            self._io.release(p)

    def _input_partitions(self, p: int) -> list[TopicPartition]:
        return [tp for tp, _ in self._inputs(p)]

    def _retry_recovery(self) -> None:
        waiting = self._fenced_at is not None and self._clock() - self._fenced_at < _FENCED_WAIT_S
        for p, exc in list(self._unrecovered.items()):
            if isinstance(exc, JoinStateError | RecordError):
                raise exc
            if isinstance(exc, PartitionFencedError) and waiting:
                continue
            self.assign([p])
            if p in self._unrecovered:
                raise BrokerError(f"recovering partition {p}: {self._unrecovered[p]}")

    def _fenced(self, exc: PartitionFencedError, now: float) -> None:
        """Another instance claimed one of this instance's partitions: this one was
        frozen or cut off past its session timeout and its assignment is stale. It
        drops every task (their memory may be ahead of the changelog) and waits for
        the rebalance its consumer is due; the partitions it then gets are
        recovered, or all of them are claimed again after `_FENCED_WAIT_S`."""
        log.warning("join_partition_fenced partition=%d error=%s", exc.partition, exc)
        self._metrics.fenced.inc()
        self._fenced_at = now
        self._sent = None
        for p in list(self.tasks):
            del self.tasks[p]
            self._io.release(p)
            self._unrecovered[p] = exc
            self._consumer.pause(*self._input_partitions(p))

    def _recover_all(self) -> None:
        """After a failed batch every task's memory may be ahead of what was committed:
        all are dropped and recovered from the changelog by the next step."""
        self._sent = None
        for p in list(self.tasks):
            del self.tasks[p]
            self._unrecovered[p] = BrokerError("recovering after a failed batch")
            self._consumer.pause(*self._input_partitions(p))

    def _recover(self, p: int) -> JoinTask:
        """The task of partition p as of the changelog's end, its last outbox completed;
        a recovery that read many records is followed by a checkpoint soon."""
        done = recover(self._io, self._state, p, self._config, self._topic_of)
        self._since_checkpoint[p] = (done.records, self._clock())
        self._metrics.recovery_seconds.observe(done.seconds)
        return done.task

    def _seek(self, task: JoinTask) -> None:
        """Inputs to where the task's state stops; one it has read nothing of to its
        beginning (the consumer may have fetched past records a dropped task read)."""
        for topic, logical in self._logical.items():
            tp = TopicPartition(topic, task.partition)
            if logical in task.offsets:
                self._consumer.seek(tp, task.offsets[logical])
            else:
                self._consumer.seek_to_beginning(tp)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, daemon: JoinDaemon) -> None:
        self._daemon = daemon

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._daemon.revoke(sorted({tp.partition for tp in revoked}))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._daemon.assign(sorted({tp.partition for tp in assigned}))
