"""Building blocks shared by the models. Symbols: B examples, F fields, N entries,
U unique rows, k latent size, P parameters per row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

Shape = Literal["constant", "increasing", "decreasing", "diamond"]


@dataclass(frozen=True)
class SparseBatch:
    """Entries of a batch mapped to unique rows: `index` [N] into U, `x` [N] values,
    `slot` [N] = example * F + field. The first
    `single_fields` * B entries hold one value per (example, field), example-major.

    `transpose` (optional) is the sparse CSR matrix [U, N] holding x at (index[n], n):
    the gradient of the gathered entries times it is the gradient of the rows, a
    parallel sparse matmul where the default backward scatters entry by entry.
    `unit_x`: every x is 1, so gathered rows need no multiplying.
    """

    index: torch.Tensor
    x: torch.Tensor
    slot: torch.Tensor
    batch_size: int
    num_fields: int
    single_fields: int = 0
    transpose: torch.Tensor | None = None
    unit_x: bool = False


def first_examples(batch: SparseBatch, m: int) -> SparseBatch:
    """The batch's first `m` examples, for a forward pass without gradients (the
    entries are ordered by example within each part, so a mask keeps the layout)."""
    if m >= batch.batch_size:
        return batch
    keep = torch.nonzero(batch.slot < m * batch.num_fields).squeeze(1)
    return SparseBatch(
        index=batch.index[keep],
        x=batch.x[keep],
        slot=batch.slot[keep],
        batch_size=m,
        num_fields=batch.num_fields,
        single_fields=batch.single_fields,
        unit_x=batch.unit_x,
    )


def _weighted_rows(values: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
    rows = values.index_select(0, batch.index)
    return rows if batch.unit_x else rows.mul_(batch.x[:, None])


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, values: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
        ctx.transpose = batch.transpose
        return _weighted_rows(values, batch)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        return torch.sparse.mm(ctx.transpose, grad), None


def gathered(values: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
    """x times the row of every entry: [U, D] -> [N, D]."""
    if batch.transpose is not None and values.requires_grad and torch.is_grad_enabled():
        out: torch.Tensor = _Gather.apply(values, batch)  # type: ignore[no-untyped-call]
        return out
    return _weighted_rows(values, batch)


def pooled(values: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
    """Σ x·values per (example, field): [U, D] row values -> [B, F, D] field embeddings."""
    b, f, d = batch.batch_size, batch.num_fields, values.shape[1]
    per_entry = gathered(values, batch)
    if batch.single_fields == f:
        return per_entry.view(b, f, d)
    head = b * batch.single_fields
    # Single-valued fields need no scatter: their entries already are [B, F_single, D].
    single = per_entry[:head].view(b, batch.single_fields, d)
    out = per_entry.new_zeros((b * f, d))
    out.index_add_(0, batch.slot[head:], per_entry[head:])
    out = out.view(b, f, d)
    return torch.cat([single, out[:, batch.single_fields :]], dim=1)


def linear_term(w: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
    """Σ_i w_i x_i per example: [U] order-1 weights -> [B].

    A vector's gather needs no sparse transpose: the backward of its
    `index_select` adds the entries up one by one, faster than a sparse matmul
    of one column."""
    per_entry = w.index_select(0, batch.index)
    if not batch.unit_x:
        per_entry = per_entry * batch.x
    head = batch.batch_size * batch.single_fields
    single = per_entry if head == len(per_entry) else per_entry[:head]
    out = single.view(batch.batch_size, batch.single_fields).sum(dim=1)
    if head < len(per_entry):
        example = torch.div(batch.slot[head:], batch.num_fields, rounding_mode="floor")
        out = out.index_add(0, example, per_entry[head:])
    return out


class _Interaction(torch.autograd.Function):
    """The FM term with its gradient in closed form, d/de_i = Σ_j e_j - e_i, in one
    pass instead of autograd's chain through the squares and sums."""

    @staticmethod
    def forward(ctx: Any, e: torch.Tensor) -> torch.Tensor:
        total = e.sum(dim=1)
        ctx.save_for_backward(e, total)
        return 0.5 * (total.square().sum(dim=1) - e.square().sum(dim=(1, 2)))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        e, total = ctx.saved_tensors
        out: torch.Tensor = (total[:, None, :] - e).mul_(grad[:, None, None])
        return out


def fm_interaction(e: torch.Tensor) -> torch.Tensor:
    """Σ_{i<j} <e_i, e_j> = ½[(Σ_i e_i)² - Σ_i e_i²] summed over k: [B, F, k] -> [B]."""
    out: torch.Tensor = _Interaction.apply(e)  # type: ignore[no-untyped-call]
    return out


def inner_products(e: torch.Tensor) -> torch.Tensor:
    """<e_i, e_j> for all field pairs i < j: [B, F, k] -> [B, F(F-1)/2]."""
    f = e.shape[1]
    rows, cols = torch.triu_indices(f, f, offset=1, device=e.device)
    gram = torch.bmm(e, e.transpose(1, 2))
    return gram[:, rows, cols]


def outer_product_superposition(e: torch.Tensor) -> torch.Tensor:
    """Qu et al.'s compressed outer product (Σ_i e_i)(Σ_i e_i)ᵀ: [B, F, k] -> [B, k²]."""
    s = e.sum(dim=1)
    return (s[:, :, None] * s[:, None, :]).flatten(1)


def hidden_sizes(layers: int, neurons: int, shape: Shape) -> list[int]:
    """Layer widths with `layers * neurons` neurons in total, in the paper's four shapes
    (3 x 200: constant 200-200-200, increasing 100-200-300, decreasing 300-200-100,
    diamond 150-300-150)."""
    if layers < 1 or neurons < 1:
        raise ValueError(f"need at least one layer and one neuron, got {layers} x {neurons}")
    if shape == "constant":
        return [neurons] * layers
    if shape in ("increasing", "decreasing"):
        weights = list(range(1, layers + 1))
    elif shape == "diamond":
        weights = [min(i + 1, layers - i) for i in range(layers)]
    else:
        raise ValueError(f"unknown network shape {shape!r}")
    total = layers * neurons
    sizes = [max(1, round(total * w / sum(weights))) for w in weights]
    return sizes[::-1] if shape == "decreasing" else sizes
