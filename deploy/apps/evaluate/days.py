"""The evaluator's core: labeled events in, per day and model the next-day holdout
and served metrics out. Pure: event time comes from the events.

For each event of day D and each model, the holdout score comes from the model's
day-end snapshot of day D-1 and the served score from the snapshot promoted last
before the impression (`SnapshotIndex`). The metrics are the replay's `Scores`:
exact up to its limit of events per day, then bounded streaming histograms, so a
day's result equals the replay's on the same events and its state stays bounded.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy.apps.evaluate.choice import SnapshotIndex
from deploy.apps.evaluate.outputs import date_of
from deploy.apps.evaluate.scorer import Scorers, score_events
from deploy.batch.replay.protocol import Truth
from model.ctr_metrics import Scores, event_day
from stream.events import LabeledEvent

HOLDOUT, SERVED, BAYES = "holdout", "served", "bayes"


@dataclass
class ModelDay:
    """One model on one day: metrics per kind, the snapshots used, what was not scored."""

    metrics: dict[str, Scores] = field(default_factory=dict)
    holdout_version: int | None = None
    holdout_promoted: bool | None = None
    holdout_newest_ms: int | None = None
    served_versions: set[int] = field(default_factory=set)
    unscored: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, labels: np.ndarray, probs: np.ndarray) -> None:
        if len(labels):
            self.metrics.setdefault(kind, Scores()).add(labels, probs)


@dataclass(frozen=True)
class Model:
    name: str
    dir: Path  # its snapshots
    index: SnapshotIndex
    scorers: Scorers


class DayTable:
    """Everything measured so far, per event day. The models' indexes are refreshed by
    the caller (the daemon before each batch, `--once` once)."""

    def __init__(self, models: Sequence[Model], truth: Truth | None = None) -> None:
        self.models = models
        self.truth = truth
        self.days: dict[int, dict[str, ModelDay]] = {}
        self.bayes: dict[int, Scores] = {}

    def add(self, events: Sequence[LabeledEvent]) -> None:
        if not events:
            return
        ts = np.fromiter((e.ts for e in events), np.int64, len(events))
        labels = np.fromiter((e.label for e in events), np.float64, len(events))
        days = event_day(ts)
        for day in np.unique(days).tolist():
            sel = np.flatnonzero(days == day)
            picked = [events[i] for i in sel.tolist()]
            for model in self.models:
                self._holdout(model, day, picked, labels[sel])
                self._served(model, day, picked, ts[sel], labels[sel])
            if self.truth is not None:
                p = self.truth([e.id for e in picked])
                known = ~np.isnan(p)
                if known.any():
                    scores = self.bayes.setdefault(day, Scores())
                    scores.add(labels[sel][known], p[known])

    def _day(self, model: str, day: int) -> ModelDay:
        return self.days.setdefault(day, {}).setdefault(model, ModelDay())

    def _holdout(
        self, model: Model, day: int, events: list[LabeledEvent], labels: np.ndarray
    ) -> None:
        entry = self._day(model.name, day)
        chosen = model.index.holdout_for(day)
        if chosen is None:
            entry.unscored["no_day_end_snapshot"] += len(events)
            return
        entry.holdout_version = chosen.version
        entry.holdout_promoted = chosen.promoted
        entry.holdout_newest_ms = chosen.newest_ms
        self._score(model, entry, HOLDOUT, chosen.version, events, labels)

    def _served(
        self,
        model: Model,
        day: int,
        events: list[LabeledEvent],
        ts: np.ndarray,
        labels: np.ndarray,
    ) -> None:
        entry = self._day(model.name, day)
        versions = model.index.served_at(ts)
        for version in np.unique(versions).tolist():
            sel = np.flatnonzero(versions == version)
            if version < 0:
                entry.unscored["nothing_served"] += len(sel)
                continue
            entry.served_versions.add(version)
            chosen = [events[i] for i in sel.tolist()]
            self._score(model, entry, SERVED, version, chosen, labels[sel])

    def _score(
        self,
        model: Model,
        entry: ModelDay,
        kind: str,
        version: int,
        events: list[LabeledEvent],
        labels: np.ndarray,
    ) -> None:
        loaded = model.scorers.get(version)
        if loaded is None:
            entry.unscored[f"{kind}_snapshot_{model.scorers.reason(version)}"] += len(events)
            return
        probs = score_events(loaded, [e.features for e in events])
        fits = ~np.isnan(probs)
        if not fits.all():
            entry.unscored[f"{kind}_schema_mismatch"] += int((~fits).sum())
        entry.add(kind, labels[fits], probs[fits])

    def result(self, day: int, model: str) -> dict[str, Any]:
        """The day's row for one model, as `evaluation/<model>/<day>.json` holds it."""
        entry = self.days.get(day, {}).get(model, ModelDay())
        holdout: dict[str, Any] = {
            "snapshot": entry.holdout_version,
            "promoted": entry.holdout_promoted,
            "snapshot_newest_ms": entry.holdout_newest_ms,
        }
        if entry.holdout_version is None:
            holdout["missing"] = f"no day-end snapshot of {date_of(day - 1)} for {model}"
        out = {
            HOLDOUT: holdout | _metrics(entry.metrics.get(HOLDOUT)),
            SERVED: {"snapshots": sorted(entry.served_versions)}
            | _metrics(entry.metrics.get(SERVED)),
            BAYES: _metrics(self.bayes.get(day)) if self.truth is not None else None,
            "unscored": dict(entry.unscored),
        }
        return out


def _metrics(scores: Scores | None) -> dict[str, Any]:
    if scores is None or scores.count == 0:
        return {"count": 0}
    result = asdict(scores.metrics())
    result["auc_bound"] = scores.auc_bound
    return {k: _finite(v) for k, v in result.items()}


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
