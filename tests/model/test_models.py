from __future__ import annotations

import itertools

import pytest
import torch

from model.layers import (
    SparseBatch,
    fm_interaction,
    hidden_sizes,
    inner_products,
    linear_term,
    pooled,
)
from model.zoo import MODELS, PAPER_NAMES, DeepFM, ModelConfig, build_model, canonical_name

B, F, K = 6, 5, 4


def _batch(b: int = B, f: int = F, u: int = 17, seed: int = 0) -> SparseBatch:
    g = torch.Generator().manual_seed(seed)
    slot = torch.arange(b * f)
    return SparseBatch(
        index=torch.randint(0, u, (b * f,), generator=g),
        x=torch.rand(b * f, generator=g) + 0.5,
        slot=slot,
        batch_size=b,
        num_fields=f,
    )


def test_fm_second_order_term_equals_brute_force_pairs() -> None:
    batch = _batch()
    v = torch.randn(17, K, dtype=torch.float64)
    e = pooled(v, SparseBatch(batch.index, batch.x.double(), batch.slot, B, F))
    fast = fm_interaction(e)
    for b in range(B):
        entries = [(int(batch.index[b * F + i]), float(batch.x[b * F + i])) for i in range(F)]
        brute = sum(
            float(v[i] @ v[j]) * xi * xj for (i, xi), (j, xj) in itertools.combinations(entries, 2)
        )
        assert float(fast[b]) == pytest.approx(brute, rel=1e-9)


def test_linear_term_and_pooling_with_a_multi_valued_field() -> None:
    # example 0: field 0 holds ids 1 and 2 at x = 0.5 each (mean pooling); field 1 holds id 3
    batch = SparseBatch(
        torch.tensor([1, 2, 3]),
        torch.tensor([0.5, 0.5, 1.0]),
        torch.tensor([0, 0, 1]),
        1,
        2,
    )
    v = torch.arange(8, dtype=torch.float32).view(4, 2)
    e = pooled(v, batch)
    assert e.tolist() == [[[3.0, 4.0], [6.0, 7.0]]]
    w = torch.tensor([0.0, 1.0, 3.0, 10.0])
    assert linear_term(w, batch).tolist() == [12.0]


def test_example_major_fast_path_equals_the_scatter_path() -> None:
    g = torch.Generator().manual_seed(3)
    b, f, u = 4, 3, 9
    # Example-major entries of 2 single-valued fields, then a multi-valued third field.
    slot_single = torch.tensor([ex * f + fld for ex in range(b) for fld in range(2)])
    slot_multi = torch.tensor([0 * f + 2, 0 * f + 2, 1 * f + 2, 2 * f + 2, 3 * f + 2])
    slot = torch.cat([slot_single, slot_multi])
    index = torch.randint(0, u, (len(slot),), generator=g)
    x = torch.rand(len(slot), generator=g)
    v, w = torch.randn(u, 5, generator=g), torch.randn(u, generator=g)
    fast = SparseBatch(index, x, slot, b, f, single_fields=2)
    slow = SparseBatch(index, x, slot, b, f, single_fields=0)
    torch.testing.assert_close(pooled(v, fast), pooled(v, slow))
    torch.testing.assert_close(linear_term(w, fast), linear_term(w, slow))


def test_inner_products_are_all_field_pairs() -> None:
    e = torch.randn(2, 4, 3)
    p = inner_products(e)
    pairs = list(itertools.combinations(range(4), 2))
    assert p.shape == (2, len(pairs))
    for n, (i, j) in enumerate(pairs):
        torch.testing.assert_close(p[:, n], (e[:, i] * e[:, j]).sum(1))


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("constant", [200, 200, 200]),
        ("increasing", [100, 200, 300]),
        ("decreasing", [300, 200, 100]),
        ("diamond", [150, 300, 150]),
    ],
)
def test_network_shapes_of_the_paper(shape: str, expected: list[int]) -> None:
    assert hidden_sizes(3, 200, shape) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_returns_logits_and_sends_gradient_to_rows_and_weights(name: str) -> None:
    config = ModelConfig(name=name, k=K, neurons=16, fnn_pretrain_examples=0)
    model = build_model(config, F, seed=1, device=torch.device("cpu"))
    params = model.linear + model.vectors * K
    rows = (0.1 * torch.randn(17, params)).requires_grad_(True)
    batch = _batch()
    logits = model(rows, batch)
    assert logits.shape == (B,)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert rows.grad is not None and rows.grad.abs().sum() > 0
    dense = [p for n, p in model.named_parameters() if n != "bias"]
    if name != "lr" and name != "fm":
        assert dense and all(p.grad is not None and p.grad.abs().sum() > 0 for p in dense)
    assert model.bias.grad is not None or name == "fnn"


def test_paper_names_and_aliases() -> None:
    assert list(PAPER_NAMES.values()) == [
        "LR",
        "FM",
        "FNN",
        "IPNN",
        "OPNN",
        "PNN*",
        "LR&DNN",
        "FM&DNN",
        "DeepFM",
    ]
    assert canonical_name("PNN*") == "pnn_star" and canonical_name("LR&DNN") == "lr_dnn"
    with pytest.raises(ValueError, match="unknown model 'xgboost'"):
        canonical_name("xgboost")
    assert ModelConfig(name="ipnn").resolved_activation() == "tanh"
    assert ModelConfig(name="deepfm").resolved_activation() == "relu"


def test_deepfm_fm_and_dnn_read_one_embedding_and_both_send_it_gradient() -> None:
    config = ModelConfig(name="deepfm", k=K, neurons=16, dropout_keep=1.0)
    model = build_model(config, F, seed=0, device=torch.device("cpu"))
    assert isinstance(model, DeepFM)
    batch = _batch()
    rows = (0.1 * torch.randn(17, 1 + K)).requires_grad_(True)
    seen: list[torch.Tensor] = []
    handle = model.dnn.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    model(rows, batch)
    handle.remove()
    e = pooled(rows[:, 1:], batch)
    torch.testing.assert_close(seen[0], e.flatten(1))  # the DNN's input is the FM's e

    def grad_of(part: str) -> torch.Tensor:
        r = rows.detach().clone().requires_grad_(True)
        _w, (v,) = model.split(r)
        shared = pooled(v, batch)
        out = fm_interaction(shared) if part == "fm" else model.dnn(shared.flatten(1))
        out.sum().backward()
        assert r.grad is not None
        return r.grad[:, 1:]

    g_fm, g_dnn = grad_of("fm"), grad_of("dnn")
    assert g_fm.abs().sum() > 0 and g_dnn.abs().sum() > 0
    full = rows.detach().clone().requires_grad_(True)
    model(full, batch).sum().backward()
    assert full.grad is not None
    torch.testing.assert_close(full.grad[:, 1:], g_fm + g_dnn)


def test_fnn_pretrains_as_fm_then_predicts_with_its_dnn() -> None:
    config = ModelConfig(name="fnn", k=K, neurons=8, fnn_pretrain_examples=2 * B)
    model = build_model(config, F, seed=0, device=torch.device("cpu"))
    rows = 0.1 * torch.randn(17, 1 + K)
    batch = _batch()
    model.train()
    fm_logits = model(rows, batch)
    w, (v,) = model.split(rows)
    torch.testing.assert_close(
        fm_logits, model.bias + linear_term(w, batch) + fm_interaction(pooled(v, batch))
    )
    model(rows, batch)
    model.eval()
    assert not model.pretraining
    dnn_logits = model(rows, batch)
    expected = model.bias + model.dnn(pooled(rows, batch).flatten(1))  # type: ignore[operator]
    torch.testing.assert_close(dnn_logits, expected)


def test_fnn_hands_over_to_its_dnn_once_the_dnn_scores_better() -> None:
    config = ModelConfig(name="fnn", k=K, neurons=8)
    model = build_model(config, F, seed=0, device=torch.device("cpu"))
    batch = _batch()
    # Large vectors: an FM far from the labels (seeded: the global RNG is the suite's).
    rows = 3.0 * torch.randn(17, 1 + K, generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(B)
    model.train()
    losses = []
    for n in range(20):  # the DNN may take over after 20 batches at the earliest
        assert model.pretraining, n
        fm = model(rows, batch)
        shadow = model.auxiliary_loss(labels)
        assert shadow is not None and shadow.requires_grad
        fm_loss = torch.nn.functional.binary_cross_entropy_with_logits(fm.detach(), labels)
        losses.append((float(fm_loss), float(shadow.detach())))
    # The DNN's output starts at the bias, the FM's at the bias plus large terms.
    assert not model.pretraining
    assert all(fm_loss > dnn_loss for fm_loss, dnn_loss in losses)
    assert model.auxiliary_loss(labels) is None  # nothing learns beside it any more


def test_dense_initialization_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(ModelConfig(neurons=8), F, seed=5, device=torch.device("cpu"))
    after = torch.rand(1)
    b = build_model(ModelConfig(neurons=8), F, seed=5, device=torch.device("cpu"))
    assert torch.equal(before, after)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
