"""Prometheus metrics of the join daemon, fed from its tasks' counters after each batch."""

from __future__ import annotations

from dataclasses import astuple, fields

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream.join.core import JoinStats
from stream.join.task import JoinTask

_STAT_NAMES = [f.name for f in fields(JoinStats)]


class JoinMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.consumed = Counter(
            "fmstream_join_records_consumed", "input records read", ["topic"], registry=r
        )
        self.labels = Counter(
            "fmstream_join_labels", "labeled events emitted, by label", ["label"], registry=r
        )
        self.anomalies = Counter(
            "fmstream_join_anomalies",
            "late, orphan and duplicate records, and impressions labeled early by the pending cap",
            ["kind"],
            registry=r,
        )
        self.dead_letters = Counter(
            "fmstream_join_dead_letters",
            "records sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.click_coverage = Gauge(
            "fmstream_join_click_coverage",
            "share of joined clicks that arrived inside their window (late ones are missed)",
            registry=r,
        )
        self.pending = Gauge(
            "fmstream_join_pending_impressions", "impressions waiting for a label", registry=r
        )
        self.watermark_lag = Gauge(
            "fmstream_join_watermark_lag_seconds",
            "wall clock minus the oldest partition watermark",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "fmstream_join_consumer_lag", "records behind the input high watermarks", registry=r
        )
        self.partitions = Gauge(
            "fmstream_join_assigned_partitions", "partitions this instance joins", registry=r
        )
        self.recoveries = Counter(
            "fmstream_join_recoveries", "partition recoveries from the changelog", registry=r
        )
        self.checkpoints = Counter(
            "fmstream_join_checkpoints", "state checkpoints written to the changelog", registry=r
        )
        self.fenced = Counter(
            "fmstream_join_fenced",
            "times a write was refused because another instance had claimed the partition",
            registry=r,
        )
        self.recovery_seconds = Histogram(
            "fmstream_join_recovery_seconds",
            "time to recover a partition from its changelog",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self._seen: dict[int, tuple[JoinTask, tuple[int, ...], dict[str, int], dict[str, int]]] = {}
        self._positive = self._late = 0

    def observe(self, tasks: dict[int, JoinTask]) -> None:
        """Adds what each task counted since the last call."""
        for p, task in tasks.items():
            before = self._seen.get(p)
            if before is None or before[0] is not task:
                before = (task, (0,) * len(_STAT_NAMES), {}, {})
            stats = astuple(task.core.stats)
            delta = dict(
                zip(
                    _STAT_NAMES, (a - b for a, b in zip(stats, before[1], strict=True)), strict=True
                )
            )
            for topic, n in task.consumed.items():
                self.consumed.labels(topic).inc(n - before[2].get(topic, 0))
            for reason, n in task.dead_letters.items():
                self.dead_letters.labels(reason).inc(n - before[3].get(reason, 0))
            self.labels.labels("1").inc(delta["labels_positive"])
            self.labels.labels("0").inc(delta["labels_negative"])
            for kind in (
                "late_clicks",
                "orphan_clicks",
                "duplicate_impressions",
                "duplicate_clicks",
                "evicted",
            ):
                self.anomalies.labels(kind).inc(delta[kind])
            self._positive += delta["labels_positive"]
            self._late += delta["late_clicks"]
            self._seen[p] = (task, stats, dict(task.consumed), dict(task.dead_letters))
        joined = self._positive + self._late
        if joined:
            self.click_coverage.set(self._positive / joined)
        self.pending.set(sum(t.core.pending for t in tasks.values()))
        self.partitions.set(len(tasks))
