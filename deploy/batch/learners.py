"""What every batch run shares (the demo's offline run, the replay): one feature
encoder for all models, trainers built on first use with their sources and id
filters, and the progressive step (score a batch, then learn it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from model.embeddings import EmbeddingSource
from model.features import EncodedBatch, FeatureEncoder, FeatureSchema, FieldSpec, infer_schema
from model.row_layout import RowLayout
from model.trainer import IdFilter, OnlineTrainer, TrainerConfig, row_layout
from model.zoo import ModelConfig
from stream.events import LabeledEvent

SourceFactory = Callable[[ModelConfig, RowLayout], EmbeddingSource | None]
FilterFactory = Callable[[tuple[FieldSpec, ...]], IdFilter | None]


@runtime_checkable
class ObservesTime(Protocol):
    """A source that stamps rows with the event time of the steps that touch them."""

    def observe(self, event_ts: int) -> None: ...


class Learners:
    def __init__(
        self,
        trainer: TrainerConfig,
        source_for: SourceFactory | None = None,
        filter_for: FilterFactory | None = None,
        schema: FeatureSchema | None = None,
    ) -> None:
        """`schema`: the features' schema; None infers it from the first batch."""
        self.trainer_config = trainer
        self._source_for = source_for
        self._filter_for = filter_for
        self.encoder = FeatureEncoder(schema) if schema is not None else None

    def encode(self, events: list[LabeledEvent]) -> tuple[EncodedBatch, np.ndarray]:
        features = [e.features for e in events]
        if self.encoder is None:
            self.encoder = FeatureEncoder(infer_schema(features))
        labels = np.fromiter((e.label for e in events), dtype=np.float32, count=len(events))
        return self.encoder.encode(features), labels

    def new_trainer(self, config: ModelConfig) -> OnlineTrainer:
        """A trainer for `config` over the encoder's fields (encode a batch first)."""
        assert self.encoder is not None, "encode a batch before building trainers"
        fields = self.encoder.fields
        layout = row_layout(config, self.trainer_config)
        source = self._source_for(config, layout) if self._source_for else None
        id_filter = self._filter_for(fields) if self._filter_for else None
        return OnlineTrainer(config, len(fields), self.trainer_config, source, id_filter)


def progressive_step(
    trainer: OnlineTrainer, batch: EncodedBatch, labels: np.ndarray, newest_ts: int
) -> tuple[np.ndarray, float]:
    """Scores the batch, then learns it; returns the scores and the seconds both took."""
    if isinstance(trainer.source, ObservesTime):
        trainer.source.observe(newest_ts)
    start = time.perf_counter()
    probs = trainer.predict_proba_many(batch)
    trainer.learn_many(batch, labels)
    return probs, time.perf_counter() - start
