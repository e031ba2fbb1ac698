"""Published snapshots without a broker: a model learns feature dicts and is published
by the trainer daemon's own `Publisher` (same files, manifest, gate and `LATEST`).
For the scorer's benchmark and tests, which need real snapshots made quickly."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploy.apps.train import checkpoint
from deploy.apps.train.publish import Announce, Gate, Published, Publisher
from deploy.wiring import cached_source
from model.ctr_metrics import BinaryMetrics, binary_metrics
from model.features import FeatureEncoder, FeatureSchema
from model.trainer import OnlineTrainer, TrainerConfig, row_layout
from model.zoo import ModelConfig
from store.row_store import RowStore

_PAPER, _CPU = ModelConfig(), TrainerConfig(device="cpu")
_CALIBRATION_ONLY = Gate(max_ne_regression=math.inf)


class SnapshotMaker:
    def __init__(
        self,
        snapshot_dir: Path,
        store_dir: Path,
        schema: FeatureSchema,
        model: ModelConfig = _PAPER,
        config: TrainerConfig = _CPU,
        cache_rows: int = 200_000,
        announce: Announce | None = None,
        gate: Gate = _CALIBRATION_ONLY,
    ) -> None:
        """The gate judges calibration only by default: a refusal is asked for (see
        `publish`), not left to the noise of small intervals."""
        layout = row_layout(model, config)
        self.store = RowStore(store_dir / model.name, layout.width)
        self.source = cached_source(self.store, layout, config.seed, cache_rows)
        self.schema = schema
        self.encoder = FeatureEncoder(schema)
        self.trainer = OnlineTrainer(model, len(schema.fields), config, self.source)
        self.publisher = Publisher(snapshot_dir, model.name, gate, time.time, announce)
        self._seen: list[tuple[np.ndarray, np.ndarray]] = []
        self.events = 0

    def learn(self, features: Sequence[Mapping[str, Any]], labels: np.ndarray) -> None:
        """Scores the batch (for the interval's metrics), then learns it."""
        batch = self.encoder.encode(features)
        self._seen.append((labels, self.trainer.predict_proba_many(batch)))
        self.trainer.learn_many(batch, labels)
        self.events += len(labels)

    def publish(
        self,
        interval: BinaryMetrics | None = None,
        trigger: str = "interval",
        newest_ms: int | None = None,
    ) -> Published:
        """A snapshot of what was learned, judged on the events since the last one (or on
        `interval`, to make the gate refuse it). `newest_ms`: the newest event time it
        learned, and the input's event time at its promotion (default: the count of
        events learned, a stand-in clock)."""
        if interval is None:
            seen = self._seen or [(np.zeros(0), np.zeros(0))]
            labels, probs = (np.concatenate(part) for part in zip(*seen, strict=True))
            interval = binary_metrics(labels, probs)
        self._seen.clear()
        newest = self.events if newest_ms is None else newest_ms
        state = checkpoint.state(
            {0: (self.events, 0)}, {"newest_ms": newest}, (self.trainer, self.schema, None)
        )
        captured = self.publisher.capture(
            self.source, state, self.trainer, self.schema, trigger, interval
        )
        return self.publisher.finish(captured, lambda: newest)

    def close(self) -> None:
        self.store.close()
