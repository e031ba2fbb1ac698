"""The fused hidden layer, its dropout masks, the CSR gather backward and batch dedup."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from model.dropout import KeepDropout
from model.grouping import UniqueEntries, unique_entries
from model.layers import (
    SparseBatch,
    fm_interaction,
    gathered,
    linear_term,
    pooled,
)
from model.mlp import MLP


def _reference(mlp: MLP, x: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    """The same network as separate torch modules, with the given dropout masks."""
    act = torch.tanh if mlp.tanh else torch.relu
    for (linear, _), mask in zip(mlp.layers(), masks, strict=True):
        x = act(nn.functional.linear(x, linear.weight, linear.bias)) * mask
    out: torch.Tensor = mlp.output(x).squeeze(1)
    return out


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("keep", [0.5, 0.8, 1.0])
def test_fused_layers_match_separate_modules_in_value_and_gradient(
    activation: str, keep: float
) -> None:
    g = torch.Generator().manual_seed(0)
    mlp = MLP(6, [8, 5], activation, keep, g)  # type: ignore[arg-type]
    x = torch.randn(7, 6, generator=g, requires_grad=True)
    # Twins of the layers' dropouts draw the masks the forward pass applies.
    twins = [copy.deepcopy(dropout) for _, dropout in mlp.layers()]
    fused = mlp(x)
    masks = []
    for (linear, _), twin in zip(mlp.layers(), twins, strict=True):
        mask = twin.mask(torch.Size((7, linear.out_features)), torch.device("cpu"))
        masks.append(torch.ones(7, linear.out_features) if mask is None else mask)
    fused.sum().backward()
    fused_grads = [t.grad for t in (x, *mlp.parameters())]
    x.grad = None
    mlp.zero_grad(set_to_none=True)
    reference = _reference(mlp, x, masks)
    reference.sum().backward()
    torch.testing.assert_close(fused, reference)
    for got, want in zip(fused_grads, [x.grad] + [p.grad for p in mlp.parameters()], strict=True):
        torch.testing.assert_close(got, want)
    if keep < 1.0:
        assert any(bool((m == 0).any()) for m in masks)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_dropout_keeps_the_papers_share_and_preserves_the_mean(keep: float) -> None:
    drop = KeepDropout(keep, torch.Generator(), seed=4)
    mask = drop.mask(torch.Size((300, 1000)), torch.device("cpu"))
    assert mask is not None
    kept = float((mask > 0).float().mean())
    assert kept == pytest.approx(keep, abs=0.005)
    assert float(mask.mean()) == pytest.approx(1.0, abs=0.01)
    drop.eval()
    assert drop.mask(torch.Size((3, 3)), torch.device("cpu")) is None


@pytest.mark.parametrize("keep", [0.5, 0.8])
@pytest.mark.parametrize("shape", [(3, 100), (1, 64), (2, 5), (70, 1), (5, 130), (0, 4)])
def test_relu_dropout_in_place_adds_the_bias_and_applies_the_mask_the_layer_would_draw(
    keep: float, shape: tuple[int, int]
) -> None:
    drop = KeepDropout(keep, torch.Generator(), seed=9)
    twin = copy.deepcopy(drop)
    random = torch.Generator().manual_seed(3)
    h = torch.randn(shape, generator=random)
    bias = torch.randn(shape[1], generator=random)
    want = torch.relu(h + bias)
    mask = twin.mask(torch.Size(shape), torch.device("cpu"))
    assert mask is not None
    drop.relu_(h, bias)
    assert torch.equal(h, want * mask)
    # the next step draws fresh bits, as the twin does
    h2 = torch.ones(shape)
    drop.relu_(h2, torch.zeros(shape[1]))
    assert torch.equal(h2, twin.mask(torch.Size(shape), torch.device("cpu")))  # type: ignore[arg-type]
    drop.eval()
    h3 = torch.randn(shape)
    want = torch.relu(h3 + bias)
    drop.relu_(h3, bias)
    assert torch.equal(h3, want)


def test_dropout_masks_are_seeded() -> None:
    a = KeepDropout(0.5, torch.Generator(), seed=1).mask(torch.Size((4, 50)), torch.device("cpu"))
    b = KeepDropout(0.5, torch.Generator(), seed=1).mask(torch.Size((4, 50)), torch.device("cpu"))
    c = KeepDropout(0.5, torch.Generator(), seed=2).mask(torch.Size((4, 50)), torch.device("cpu"))
    assert a is not None and b is not None and c is not None
    assert torch.equal(a, b) and not torch.equal(a, c)


def _groups(e: UniqueEntries) -> dict[int, list[int]]:
    return {int(u): e.order[e.starts[i] : e.starts[i + 1]].tolist() for i, u in enumerate(e.unique)}


def test_unique_entries_group_every_entry_under_its_id() -> None:
    ids = np.array([7, -2, 7, 40, -2, 7], dtype=np.int64)
    e = unique_entries(ids)
    assert e.unique[e.inverse].tolist() == ids.tolist()
    assert _groups(e) == {-2: [1, 4], 7: [0, 2, 5], 40: [3]}


def test_unique_entries_match_numpys_grouping_for_any_ids() -> None:
    rng = np.random.default_rng(1)
    extremes = np.array([-(2**63), 2**63 - 1, -1, 0], dtype=np.int64)
    for ids in (
        rng.integers(-50, 50, 500).astype(np.int64),  # many repeats
        # nearly all distinct: overflows the first, cache-sized table
        rng.integers(-(2**63), 2**63 - 1, 3_000, dtype=np.int64),
        np.concatenate([extremes, extremes[::-1], np.arange(1_000)]),
        np.zeros(0, dtype=np.int64),
    ):
        e = unique_entries(ids)
        unique, first = np.unique(ids, return_index=True)
        # distinct ids in order of first appearance
        assert e.unique.tolist() == ids[np.sort(first)].tolist()
        assert sorted(e.unique.tolist()) == unique.tolist()
        assert e.unique[e.inverse].tolist() == ids.tolist()
        assert _groups(e) == {int(u): np.flatnonzero(ids == u).tolist() for u in unique}


@pytest.mark.parametrize("unit_x", [False, True])
def test_sparse_transpose_backward_equals_the_scatter_backward(unit_x: bool) -> None:
    g = torch.Generator().manual_seed(5)
    b, f, d = 4, 3, 5
    # Two single-valued fields (example-major), then a multi-valued third field.
    head = [ex * f + fld for ex in range(b) for fld in range(2)]
    multi = [ex * f + 2 for ex in (0, 0, 1, 1, 2, 3, 3)]
    slot = torch.tensor(head + multi)
    ids = torch.randint(0, 6, (len(slot),), generator=g).numpy()
    e = unique_entries(ids)
    x = torch.ones(len(ids)) if unit_x else torch.rand(len(ids), generator=g)
    order = torch.from_numpy(e.order)
    transpose = torch.sparse_csr_tensor(
        torch.from_numpy(e.starts),
        order,
        x[order],
        size=(len(e.unique), len(ids)),
        check_invariants=True,
    )
    rows = torch.randn(len(e.unique), d, generator=g)
    grads = []
    for t in (None, transpose):
        batch = SparseBatch(
            torch.from_numpy(e.inverse), x, slot, b, f, 2, transpose=t, unit_x=unit_x
        )
        leaf = rows.clone().requires_grad_(True)
        # the latent part goes through the sparse matmul (when given), the order-1
        # weights through their own gather
        out = (pooled(leaf[:, 1:], batch) ** 2).sum() + (linear_term(leaf[:, 0], batch) ** 2).sum()
        out.backward()
        grads.append(leaf.grad)
        torch.testing.assert_close(gathered(leaf, batch), rows[batch.index] * x[:, None])
    torch.testing.assert_close(grads[0], grads[1])


def test_fm_interaction_gradient_is_the_sum_of_the_other_fields() -> None:
    e = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fm_interaction, (e,))
    fm_interaction(e).sum().backward()
    with torch.no_grad():
        others = e.sum(dim=1, keepdim=True) - e
    torch.testing.assert_close(e.grad, others)
