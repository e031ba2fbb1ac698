"""The evaluator daemon: `labeled` in, each closed day's results out.

It reads `labeled` from its own saved position. Before it judges a batch it waits
until every model's trainer has published a snapshot that learned past the
batch's newest event (so the day-end snapshot of the day before, and every
promotion before the batch's impressions, are known), or until that trainer has
made no progress for `max_wait_s`. A day closes once every partition's event time
(`watermark`) has passed its end plus the attribution window: its rows are written per model
(`<out>/<model>/<date>.json`, a side file beside the day-end snapshot's manifest,
gauges) and the report is regenerated. The state (position and the open days'
metrics) is saved every `save_every_s`, when a day closes, and on stop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from deploy.apps.evaluate import state
from deploy.apps.evaluate.days import DayTable, Model
from deploy.apps.evaluate.metrics import EvaluateMetrics
from deploy.apps.evaluate.outputs import date_of, write_day, write_report
from deploy.apps.evaluate.sources import decoded
from deploy.apps.train.publish import EVALUATION
from deploy.runtime.files import replace_text
from stream.events import DAY_MS, LabeledEvent
from stream.kafka.labeled_reader import LabeledRecord

log = logging.getLogger(__name__)
_POLL_MS = 200


class Reader(Protocol):
    partitions: tuple[int, ...]

    def seek(self, next_offsets: dict[int, int]) -> None: ...
    def poll(self, timeout_ms: int) -> list[LabeledRecord]: ...
    def lag(self) -> dict[int, int]: ...


class Stop(Protocol):
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass(frozen=True)
class DaemonConfig:
    out: Path
    state_path: Path
    window_ms: int
    poll_s: float = 2.0
    max_wait_s: float = 600.0
    save_every_s: float = 10.0
    plot: bool = True


def watermark(
    newest_ms: Mapping[int, int], partitions: Sequence[int], lag: Mapping[int, int]
) -> int | None:
    """The event time every partition has passed: the least of each partition's newest
    event. Each partition of `labeled` is written by its own join task, so one may run
    a day behind another; a partition that has carried no event yet holds the time
    back while records wait in it (or its end is not known yet), and not once it is
    read to its end (a topic with more partitions than traffic)."""
    if not newest_ms:
        return None
    for partition in partitions:
        if partition not in newest_ms and lag.get(partition, 1) > 0:
            return None
    return min(newest_ms.values())


class Evaluator:
    def __init__(
        self,
        config: DaemonConfig,
        reader: Reader,
        table: DayTable,
        metrics: EvaluateMetrics,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.reader = reader
        self.table = table
        self.metrics = metrics
        self.clock = clock
        self.progress = state.restore(config.state_path, table)
        self._stalled: dict[str, int | None] = {}  # model -> the progress it stalled at

    def run(self, stop: Stop) -> None:
        self.reader.seek(self.progress.positions)
        next_save = self.clock() + self.config.save_every_s
        while not stop.is_set():
            records = self.reader.poll(_POLL_MS)
            if records and not self._judge(records, stop):
                break  # stopped while waiting: these records are read again on restart
            self._close_days()
            if self.clock() >= next_save:
                self.save()
                next_save = self.clock() + self.config.save_every_s
        self.save()

    def save(self) -> None:
        state.save(self.config.state_path, self.progress, self.table)

    def _judge(self, records: list[LabeledRecord], stop: Stop) -> bool:
        before = self.progress.skipped.copy()
        newest: dict[int, int] = {}
        events: list[LabeledEvent] = []
        for partition in sorted({r.partition for r in records}):
            mine = decoded([r for r in records if r.partition == partition], self.progress.skipped)
            if mine:
                newest[partition] = max(e.ts for e in mine)
                events.extend(mine)
        for reason, n in (self.progress.skipped - before).items():
            self.metrics.skipped.labels(reason).inc(n)
        if events and not self._wait_for_trainers(max(newest.values()), stop):
            return False
        self._add(events)
        for partition, ts in newest.items():
            seen = self.progress.newest_ms.get(partition, ts)
            self.progress.newest_ms[partition] = max(seen, ts)
        for record in records:
            self.progress.positions[record.partition] = record.offset + 1
        return True

    def _add(self, events: list[LabeledEvent]) -> None:
        open_events = [e for e in events if e.ts // DAY_MS not in self.progress.closed]
        late = len(events) - len(open_events)
        if late:
            self.progress.skipped["day_already_written"] += late
            self.metrics.skipped.labels("day_already_written").inc(late)
        self.table.add(open_events)
        self.metrics.events.inc(len(events))

    def _wait_for_trainers(self, newest_ms: int, stop: Stop) -> bool:
        """False when stopped meanwhile."""
        for model in self.table.models:
            waited_from = self.clock()
            while True:
                model.index.refresh()
                through = model.index.trained_through()
                if through is not None and through >= newest_ms:
                    self._stalled.pop(model.name, None)
                    break
                if model.name in self._stalled and self._stalled[model.name] == through:
                    break  # given up on at this progress: judged with what it has
                if self.clock() - waited_from > self.config.max_wait_s:
                    log.warning(
                        "evaluate_trainer_behind model=%s trained_through=%s needed=%d "
                        "waited_s=%.0f: judging with the snapshots it has",
                        model.name,
                        through,
                        newest_ms,
                        self.config.max_wait_s,
                    )
                    self._stalled[model.name] = through
                    break
                self.metrics.waiting.set(1)
                if stop.wait(self.config.poll_s):
                    return False
            self.metrics.waiting.set(0)
        return True

    def _close_days(self) -> None:
        newest = watermark(self.progress.newest_ms, self.reader.partitions, self.reader.lag())
        if newest is None:
            return
        self.metrics.event_time.set(newest / 1000)
        days = set(self.table.days) | set(self.table.bayes)
        due = sorted(d for d in days if (d + 1) * DAY_MS + self.config.window_ms <= newest)
        for day in due:
            for model in self.table.models:
                self._write(model, day)
            self.progress.closed.add(day)
            self.table.days.pop(day, None)
            self.table.bayes.pop(day, None)
            self.metrics.days_written.inc()
        if due:
            self.save()
            write_report(self.config.out, with_plot=self.config.plot)

    def _write(self, model: Model, day: int) -> None:
        row = self.table.result(day, model.name) | {"skipped_records": dict(self.progress.skipped)}
        write_day(self.config.out, model.name, day, row)
        self.metrics.day(model.name, date_of(day), row)
        version = row["holdout"]["snapshot"]
        snapshot = model.dir / f"{version:012d}" if version is not None else None
        if snapshot is not None and snapshot.is_dir():
            side = {"day": date_of(day), "holdout": row["holdout"], "bayes": row["bayes"]}
            replace_text(snapshot / EVALUATION, json.dumps(side, indent=1, sort_keys=True) + "\n")
