"""A trainer restored from its state (and its rows) continues exactly as the one that
never stopped: the dense weights, Adam's moments, the examples seen and the dropout
masks all come back."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

from model.features import EncodedBatch, FeatureEncoder, FeatureSchema, FieldSpec
from model.trainer import OnlineTrainer
from model.zoo import ModelConfig

SCHEMA = FeatureSchema(tuple(FieldSpec(f"f{i}") for i in range(6)))


def _batches(n: int) -> list[tuple[EncodedBatch, np.ndarray]]:
    rng = np.random.default_rng(0)
    encoder = FeatureEncoder(SCHEMA)
    out = []
    for _ in range(n):
        values = rng.integers(0, 20, (128, 6))
        feats = [{f"f{i}": str(v) for i, v in enumerate(row)} for row in values.tolist()]
        labels = (rng.random(128) < 0.2 + 0.5 * (values[:, 0] < 5)).astype(np.float32)
        out.append((encoder.encode(feats), labels))
    return out


@pytest.mark.parametrize("name", ["deepfm", "fnn", "ipnn"])
def test_a_restored_trainer_continues_bit_for_bit(name: str) -> None:
    config = ModelConfig(name=name, k=4, neurons=16, hidden_layers=2)
    batches = _batches(6)
    calm = OnlineTrainer(config, 6)
    for batch, labels in batches:
        calm.learn_many(batch, labels)

    first = OnlineTrainer(config, 6)
    for batch, labels in batches[:3]:
        first.learn_many(batch, labels)
    saved = io.BytesIO()
    torch.save(first.state_dict(), saved)
    resumed = OnlineTrainer(config, 6, source=copy.deepcopy(first.source))
    resumed.load_state_dict(torch.load(io.BytesIO(saved.getvalue()), weights_only=True))
    assert resumed.examples_seen == 3 * 128
    for batch, labels in batches[3:]:
        resumed.learn_many(batch, labels)

    probe = batches[0][0]
    np.testing.assert_array_equal(
        resumed.predict_proba_many(probe),
        calm.predict_proba_many(probe),
    )
