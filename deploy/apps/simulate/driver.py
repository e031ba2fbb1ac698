"""Drives the simulator into a sink, paced against the wall clock when asked."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from model.ctr_metrics import BinaryMetrics, binary_metrics
from stream.simulate import Record, SimulationConfig, Simulator, Truth

log = logging.getLogger(__name__)


class RecordSink(Protocol):
    sent: int

    def write(self, record: Record) -> None: ...
    def close(self) -> None: ...


class TruthSink(Protocol):
    def write(self, truth: Truth) -> None: ...
    def close(self) -> None: ...


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class DaySummary:
    """One simulated day, with the score of the Bayes-optimal predictor on its labels."""

    day: int
    date: str
    counts: dict[str, int]
    bayes: BinaryMetrics


class Pacer:
    """Holds records back until the wall clock has caught up with event time / speed."""

    def __init__(
        self,
        speed: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._speed = speed
        self._clock = clock
        self._sleep = sleep
        self._origin: tuple[int, float] | None = None

    def wait_for(self, event_ms: int) -> None:
        if self._origin is None:
            self._origin = (event_ms, self._clock())
            return
        first_ms, first_wall = self._origin
        due = first_wall + (event_ms - first_ms) / 1000.0 / self._speed
        ahead = due - self._clock()
        # Sleeping per record would cost more than the records; batch short waits.
        if ahead > 0.005:
            self._sleep(ahead)


def run_simulation(
    config: SimulationConfig,
    sink: RecordSink,
    truth_sink: TruthSink | None,
    stop: StopFlag,
    pacer: Pacer | None = None,
) -> list[DaySummary]:
    summaries: list[DaySummary] = []
    for day in Simulator(config).run():
        for record in day.records:
            if pacer is not None:
                pacer.wait_for(record.delivery)
            sink.write(record)
        if truth_sink is not None:
            truth_sink.write(day.truth)
        summary = summarize(day.day, day.truth, day.counts)
        summaries.append(summary)
        log.info(
            "day_simulated day=%d date=%s records=%d impressions=%d clicks=%d positives=%d "
            "bayes_auc=%.4f bayes_logloss=%.5f",
            summary.day,
            summary.date,
            len(day.records),
            day.counts["impressions"],
            day.counts["clicks"],
            summary.bayes.positives,
            summary.bayes.auc,
            summary.bayes.logloss,
        )
        if stop.is_set():
            log.warning("simulation_stopped day=%d reason=signal", day.day)
            break
    return summaries


def summarize(day: int, truth: Truth, counts: dict[str, int]) -> DaySummary:
    date = datetime.fromtimestamp(int(truth.ts[0]) / 1000, UTC).date().isoformat()
    return DaySummary(day, date, dict(counts), binary_metrics(truth.label, truth.p_label))


def format_days(summaries: list[DaySummary]) -> str:
    header = (
        f"{'day':>3} {'date':<10} {'impressions':>11} {'clicks':>7} {'labels=1':>8} "
        f"{'late':>5} {'dup_clk':>7} {'orphan':>6} {'bad':>5} {'bayes_auc':>9} {'bayes_ll':>8}"
    )
    rows = [header]
    for s in summaries:
        c = s.counts
        rows.append(
            f"{s.day:>3} {s.date:<10} {c['impressions']:>11} {c['clicks']:>7} "
            f"{s.bayes.positives:>8} {c['late_clicks']:>5} {c['duplicate_clicks']:>7} "
            f"{c['orphan_clicks']:>6} {c['malformed']:>5} "
            f"{s.bayes.auc:>9.4f} {s.bayes.logloss:>8.5f}"
        )
    return "\n".join(rows)
