from __future__ import annotations

import numpy as np
import torch

from model.embeddings import InMemoryEmbeddings
from model.features import FeatureEncoder, FeatureSchema, FieldSpec
from model.hashing import DEFAULT, feature_id
from model.trainer import OnlineTrainer, TrainerConfig
from model.zoo import ModelConfig
from store.admission import Admission, CountMinSketch


def test_count_min_sketch_never_underestimates_in_bounded_memory() -> None:
    rng = np.random.default_rng(0)
    ids = rng.zipf(1.3, 200_000).astype(np.int64) * 7919
    sketch = CountMinSketch(width=4096, depth=4)
    for i in range(0, len(ids), 10_000):
        sketch.add(ids[i : i + 10_000])
    values, counts = np.unique(ids, return_counts=True)
    estimate = sketch.estimate(values)
    assert (estimate >= counts).all()
    # Frequent ids are counted nearly exactly even with far more ids than counters.
    top = np.argsort(-counts)[:20]
    assert (estimate[top] <= counts[top] * 1.05 + 5).all()
    assert sketch._table.nbytes == 4 * 4096 * 4


def test_rare_values_train_their_fields_default_row_until_admitted() -> None:
    schema = FeatureSchema((FieldSpec("user"), FieldSpec("ad")))
    enc = FeatureEncoder(schema)
    defaults = np.array([feature_id(f.name, DEFAULT) for f in enc.fields])
    thresholds = np.array([{"user": 3, "ad": 1}[f.name] for f in enc.fields])
    admission = Admission(thresholds, defaults, CountMinSketch(1024, seed=1))
    trainer = OnlineTrainer(
        ModelConfig(name="fm", k=4), 2, TrainerConfig(device="cpu"), id_filter=admission
    )
    source = trainer.source
    assert isinstance(source, InMemoryEmbeddings)
    batch = enc.encode([{"user": "u1", "ad": "a1"}])
    user_row = feature_id("user", "u1")
    trainer.predict_proba_many(batch)  # scoring does not count sightings
    for seen in (1, 2):
        trainer.learn_many(batch, np.array([1.0]))
        assert user_row not in source, f"admitted after {seen} sightings"
        assert feature_id("user", DEFAULT) in source
    trainer.learn_many(batch, np.array([1.0]))
    assert user_row in source
    assert feature_id("ad", "a1") in source  # threshold 1: at once
    assert (admission.admitted, admission.deferred) == (4, 2)
    row = source.lookup(torch.tensor([user_row]), create=False)
    assert row.abs().sum() > 0
