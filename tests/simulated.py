"""Labeled days straight from the simulator's truth, for model tests that need no joiner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.errors import RecordError
from stream.events import decode_impression
from stream.simulate import SimulationConfig, Simulator


@dataclass(frozen=True)
class LabeledDay:
    features: list[dict[str, Any]]
    labels: np.ndarray
    p_label: np.ndarray


def labeled_days(config: SimulationConfig) -> list[LabeledDay]:
    """Each day's unique impressions in event-time order with their joined label and truth."""
    traffic = list(Simulator(config).run())
    features: dict[str, dict[str, Any]] = {}
    for day in traffic:
        for r in day.records:
            if r.topic != "impressions":
                continue
            try:
                imp = decode_impression(r.value)
            except RecordError:
                continue
            features.setdefault(imp.id, dict(imp.features))
    return [
        LabeledDay(
            [features[i] for i in day.truth.ids],
            day.truth.label.astype(np.float32),
            day.truth.p_label,
        )
        for day in traffic
    ]
