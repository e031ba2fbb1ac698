"""Prometheus metrics of the evaluator: each written day's results as gauges."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from deploy.apps.evaluate.days import BAYES, HOLDOUT, SERVED

_QUALITY = ("auc", "logloss", "normalized_entropy", "calibration", "count")


class EvaluateMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.quality = {
            key: Gauge(
                f"fmstream_eval_{key}",
                f"{key} of a written day, per model and kind (holdout, served, bayes)",
                ["model", "day", "kind"],
                registry=r,
            )
            for key in _QUALITY
        }
        self.events = Counter(
            "fmstream_eval_events", "labeled events read from the topic", registry=r
        )
        self.skipped = Counter(
            "fmstream_eval_skipped_records",
            "labeled records or events not evaluated, by reason",
            ["reason"],
            registry=r,
        )
        self.days_written = Counter(
            "fmstream_eval_days_written", "days whose results were written", registry=r
        )
        self.waiting = Gauge(
            "fmstream_eval_waiting_for_trainer",
            "1 while the evaluator waits for a model's trainer to publish past its input",
            registry=r,
        )
        self.event_time = Gauge(
            "fmstream_eval_event_time_seconds",
            "event time every partition has passed (days close behind it)",
            registry=r,
        )

    def day(self, model: str, date: str, row: dict[str, Any]) -> None:
        for kind in (HOLDOUT, SERVED, BAYES):
            values = row.get(kind) or {}
            for key, gauge in self.quality.items():
                value = values.get(key)
                if value is not None:
                    gauge.labels(model, date, kind).set(value)
