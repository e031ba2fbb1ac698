"""The row optimizer of FM-family models and the bound on how far a step moves logits."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from model.features import FeatureEncoder, FeatureSchema, FieldSpec
from model.layers import SparseBatch, first_examples, linear_term, pooled
from model.sparse_optim import SparseAdagrad, SparseFTRL, SplitRows
from model.trainer import OnlineTrainer, TrainerConfig
from model.zoo import ModelConfig

SCHEMA = FeatureSchema((*(FieldSpec(f"f{i}") for i in range(30)), FieldSpec("m", "multi")))


def _events(n: int, seed: int) -> tuple[list[dict[str, Any]], np.ndarray]:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 3, (n, 30))
    feats: list[dict[str, Any]] = [
        {**{f"f{i}": str(v) for i, v in enumerate(row)}, "m": [f"t{row[0]}", f"t{row[1] + 3}"]}
        for row in values.tolist()
    ]
    # Rare clicks on few-valued fields: every row is in every batch, in step.
    return feats, (rng.random(n) < 0.01).astype(np.float32)


def test_split_rows_step_ftrl_on_the_order_1_weight_and_adagrad_on_the_vectors() -> None:
    split = SplitRows(1, SparseFTRL(), SparseAdagrad())
    assert split.name == "ftrl+adagrad" and split.state_width(5) == 2 + 4
    params = torch.randn(3, 5)
    state = torch.zeros(3, 6)
    grad = torch.randn(3, 5)
    head, head_state = params[:, :1].clone(), torch.zeros(3, 2)
    rest, rest_state = params[:, 1:].clone(), torch.zeros(3, 4)
    split.step(params, state, grad)
    SparseFTRL().step(head, head_state, grad[:, :1])
    SparseAdagrad().step(rest, rest_state, grad[:, 1:])
    torch.testing.assert_close(params, torch.cat([head, rest], dim=1))
    torch.testing.assert_close(state, torch.cat([head_state, rest_state], dim=1))


def test_the_first_examples_of_a_batch_pool_as_in_the_whole_batch() -> None:
    # 4 examples, 2 single-valued fields, then a multi-valued one with 0-3 values each.
    single = [(e, f) for e in range(4) for f in range(2)]
    multi = [(0, 2), (0, 2), (1, 2), (3, 2), (3, 2), (3, 2)]
    slots = torch.tensor([e * 3 + f for e, f in single + multi])
    n = len(slots)
    batch = SparseBatch(torch.arange(n) % 7, torch.rand(n) + 0.5, slots, 4, 3, single_fields=2)
    values = torch.randn(7, 5)
    whole = pooled(values, batch)
    linear = linear_term(values[:, 0], batch)
    for m in (1, 2, 3, 4):
        head = first_examples(batch, m)
        torch.testing.assert_close(pooled(values, head), whole[:m])
        torch.testing.assert_close(linear_term(values[:, 0], head), linear[:m])


def _first_step_moves(max_logit_step: float) -> tuple[float, int]:
    feats, y = _events(1024, 1)
    batch = FeatureEncoder(SCHEMA).encode(feats)
    config = TrainerConfig(seed=1, max_logit_step=max_logit_step)
    trainer = OnlineTrainer(ModelConfig("fm", k=4), len(SCHEMA.fields), config)
    before = trainer.predict_proba_many(batch)
    trainer.learn_many(batch, y)
    after = trainer.predict_proba_many(batch)
    moved = np.log(after / (1 - after)) - np.log(before / (1 - before))
    # The bias's own step moves every logit alike; the bound is on what rows do.
    moved -= moved.mean()
    return float(np.sqrt(np.mean(moved**2))), trainer.bounded_steps


def test_a_step_moves_its_batch_logits_at_most_max_logit_step() -> None:
    free, free_bounded = _first_step_moves(0.0)
    assert free > 0.1 and free_bounded == 0
    # Judged on the batch's first 128 examples, and to first order: some slack.
    bounded, count = _first_step_moves(0.03)
    assert bounded <= 0.03 * 1.5 and count == 1
