from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
import torch

from model.ctr_metrics import logloss
from model.embeddings import InMemoryEmbeddings
from model.features import FeatureEncoder, FeatureSchema, FieldSpec
from model.row_layout import RowLayout, initial_rows
from model.sparse_optim import SparseAdagrad, SparseAdam, SparseFTRL
from model.trainer import OnlineTrainer, TrainerConfig, row_layout
from model.zoo import ModelConfig


def _dense_reference(
    opt_cls: type[torch.optim.Optimizer], grads: list[torch.Tensor], **kw: Any
) -> torch.Tensor:
    p = torch.nn.Parameter(torch.full((3,), 0.5, dtype=torch.float64))
    opt = opt_cls([p], **kw)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


@pytest.mark.parametrize(
    ("sparse", "dense_cls", "kw"),
    [
        (
            SparseAdagrad(lr=0.1, initial_accumulator=0.1, eps=1e-10),
            torch.optim.Adagrad,
            {"lr": 0.1, "eps": 1e-10, "initial_accumulator_value": 0.1},
        ),
        (SparseAdam(lr=0.01), torch.optim.Adam, {"lr": 0.01}),
    ],
)
def test_per_row_optimizers_match_torch_on_a_row(sparse, dense_cls, kw) -> None:
    grads = [torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64) * (i + 1) for i in range(5)]
    params = torch.full((1, 3), 0.5, dtype=torch.float64)
    state = torch.zeros((1, sparse.state_width(3)), dtype=torch.float64)
    for g in grads:
        sparse.step(params, state, g[None, :])
    torch.testing.assert_close(params[0], _dense_reference(dense_cls, grads, **kw))


def test_ftrl_matches_the_paper_algorithm() -> None:
    opt = SparseFTRL(alpha=0.1, beta=1.0, l1=0.5, l2=0.1)
    params = torch.zeros((1, 1), dtype=torch.float64)
    state = torch.zeros((1, 2), dtype=torch.float64)
    z = n = w = 0.0
    for g in (-2.0, -1.5, 0.2, -3.0):
        grad = torch.tensor([[g]], dtype=torch.float64)
        opt.step(params, state, grad)
        sigma = (math.sqrt(n + g * g) - math.sqrt(n)) / 0.1
        z += g - sigma * w
        n += g * g
        w = (
            0.0
            if abs(z) <= 0.5
            else -(z - math.copysign(0.5, z)) / ((1.0 + math.sqrt(n)) / 0.1 + 0.1)
        )
        assert float(params[0, 0]) == pytest.approx(w)
    assert w > 0  # enough negative gradient has moved it out of the L1 dead zone


SCHEMA = FeatureSchema((FieldSpec("a"), FieldSpec("b"), FieldSpec("c", "multi")))


def _data(n: int, seed: int) -> tuple[list[dict[str, Any]], np.ndarray]:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 8, n), rng.integers(0, 8, n)
    logit = -1.0 + 1.5 * ((a + b) % 2 == 0) - 1.5 * (a == 3) + 1.0 * (b < 3)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    feats = [
        {"a": str(x), "b": str(z), "c": [f"t{x % 3}", f"t{z % 4}"]}
        for x, z in zip(a, b, strict=True)
    ]
    return feats, y


def _train(name: str, seed: int, batches: int = 20) -> tuple[OnlineTrainer, list[float]]:
    feats, y = _data(batches * 256, 0)
    enc = FeatureEncoder(SCHEMA)
    config = TrainerConfig(device="cpu", seed=seed, sparse_lr=0.2 if name != "lr" else None)
    trainer = OnlineTrainer(ModelConfig(name=name, k=4, neurons=32), 3, config)
    losses = [
        trainer.learn_many(enc.encode(feats[i : i + 256]), y[i : i + 256])
        for i in range(0, len(y), 256)
    ]
    return trainer, losses


def test_training_is_deterministic_on_cpu_for_a_seed() -> None:
    _, first = _train("deepfm", seed=3)
    _, second = _train("deepfm", seed=3)
    _, other = _train("deepfm", seed=4)
    assert first == second
    assert first != other


@pytest.mark.parametrize("name", ["lr", "fm", "deepfm", "pnn_star", "fm_dnn"])
def test_learning_beats_the_base_rate_on_held_out_data(name: str) -> None:
    trainer, _ = _train(name, seed=0, batches=40)
    feats, y = _data(4096, 1)
    probs = trainer.predict_proba_many(FeatureEncoder(SCHEMA).encode(feats))
    assert probs.shape == (4096,) and ((probs > 0) & (probs < 1)).all()
    base = logloss(y, np.full(len(y), y.mean()))
    assert logloss(y, probs) < base - 0.01


def test_prediction_never_creates_rows_but_learning_does() -> None:
    trainer = OnlineTrainer(ModelConfig(name="fm", k=4), 3, TrainerConfig(device="cpu"))
    source = trainer.source
    assert isinstance(source, InMemoryEmbeddings)
    batch = FeatureEncoder(SCHEMA).encode([{"a": "x", "b": "y", "c": ["z"]}])
    p1 = trainer.predict_proba_many(batch)
    assert len(source) == 0
    trainer.learn_many(batch, np.array([1.0]))
    assert len(source) == 3
    assert trainer.predict_proba_many(batch)[0] > p1[0]


def test_rows_carry_their_optimizer_state_and_start_from_the_id() -> None:
    layout = row_layout(ModelConfig(name="deepfm", k=4), TrainerConfig())
    # w, V | FTRL's z and n for w, Adagrad's accumulators for V
    assert (layout.params, layout.width) == (5, 5 + 2 + 4)
    assert layout.describe()["optimizer"] == "ftrl+adagrad"
    source = InMemoryEmbeddings(layout, seed=9)
    ids = torch.tensor([5, -7, 123456789012], dtype=torch.int64)
    rows = source.lookup(ids)
    torch.testing.assert_close(rows, torch.from_numpy(initial_rows(ids.numpy(), layout, 9)))
    rows[:, -1] = 4.0  # the optimizer's state lives in the row
    source.update(ids, rows)
    assert source.lookup(ids[[1]])[0, -1] == 4.0


def test_a_source_with_another_layout_is_refused() -> None:
    other = InMemoryEmbeddings(RowLayout(1, 1, 8, SparseAdagrad()))
    with pytest.raises(ValueError, match="the model's rows"):
        OnlineTrainer(ModelConfig(name="fm", k=4), 3, TrainerConfig(), source=other)


def test_an_id_filter_that_replaces_ids_learns_as_if_the_batch_held_them() -> None:
    # One encoded batch serves a filtered and an unfiltered model (as in the demo):
    # its cached grouping must not leak into the filtered model's step.
    feats, y = _data(512, 5)
    batch = FeatureEncoder(SCHEMA).encode(feats)
    shared = np.int64(424242)

    def to_shared(ids: np.ndarray, fields: np.ndarray, count: bool) -> np.ndarray:
        return np.where(ids % 3 == 0, shared, ids)

    replaced = dataclasses.replace(batch, ids=to_shared(batch.ids, batch.slot, True))
    assert not np.array_equal(replaced.ids, batch.ids)
    config, model = TrainerConfig(device="cpu", seed=2), ModelConfig(name="deepfm", k=4, neurons=16)
    filtered = OnlineTrainer(model, 3, config, id_filter=to_shared)
    reference = OnlineTrainer(model, 3, config)
    plain = OnlineTrainer(model, 3, config)
    for _ in range(3):
        unfiltered = plain.learn_many(batch, y)  # groups and caches the batch's own ids
        got, want = filtered.learn_many(batch, y), reference.learn_many(replaced, y)
        assert got == want and got != unfiltered
    np.testing.assert_array_equal(
        filtered.predict_proba_many(batch), reference.predict_proba_many(replaced)
    )
