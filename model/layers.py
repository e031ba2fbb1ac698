"""Building blocks shared by the models. Symbols: B examples, F fields, N entries,
U unique rows, k latent size, P parameters per row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn

Shape = Literal["constant", "increasing", "decreasing", "diamond"]
Activation = Literal["relu", "tanh"]


@dataclass(frozen=True)
class SparseBatch:
    """Entries of a batch mapped to unique rows: `index` [N] into U, `x` [N] values,
    `slot` [N] = example * F + field, `example` [N] = slot // F. The first
    `single_fields` * B entries hold one value per (example, field), example-major.

    `transpose` (optional) is the sparse CSR matrix [U, N] holding x at (index[n], n):
    the gradient of the gathered entries times it is the gradient of the rows, a
    parallel sparse matmul where the default backward scatters entry by entry.
    """

    index: torch.Tensor
    x: torch.Tensor
    slot: torch.Tensor
    example: torch.Tensor
    batch_size: int
    num_fields: int
    single_fields: int = 0
    transpose: torch.Tensor | None = None


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, values: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
        ctx.transpose = batch.transpose
        return values.index_select(0, batch.index) * batch.x[:, None]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        return torch.sparse.mm(ctx.transpose, grad), None


def gathered(values: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
    """x times the row of every entry: [U, D] -> [N, D]."""
    if batch.transpose is not None and values.requires_grad and torch.is_grad_enabled():
        out: torch.Tensor = _Gather.apply(values, batch)  # type: ignore[no-untyped-call]
        return out
    return values.index_select(0, batch.index) * batch.x[:, None]


def pooled(values: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
    """Σ x·values per (example, field): [U, D] row values -> [B, F, D] field embeddings."""
    b, f, d = batch.batch_size, batch.num_fields, values.shape[1]
    per_entry = gathered(values, batch)
    head = b * batch.single_fields
    # Single-valued fields need no scatter: their entries already are [B, F_single, D].
    single = per_entry[:head].view(b, batch.single_fields, d)
    if batch.single_fields == f:
        return single
    out = per_entry.new_zeros((b * f, d))
    out.index_add_(0, batch.slot[head:], per_entry[head:])
    out = out.view(b, f, d)
    return torch.cat([single, out[:, batch.single_fields :]], dim=1)


def linear_term(w: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
    """Σ_i w_i x_i per example: [U] order-1 weights -> [B]."""
    per_entry = gathered(w[:, None], batch)[:, 0]
    head = batch.batch_size * batch.single_fields
    out = per_entry[:head].view(batch.batch_size, batch.single_fields).sum(dim=1)
    if head < len(per_entry):
        out = out.index_add(0, batch.example[head:], per_entry[head:])
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


# Row b holds the bits of the byte b, most significant first, as 0.0 / 1.0.
_BIT_TABLE = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32)


class KeepDropout(nn.Module):
    """Dropout masks given the paper's keep probability, from the layer's own seeded
    generator so that models trained side by side stay deterministic.

    On CPU the masks come from numpy's PCG64: torch's CPU bernoulli_ costs about
    a third of a DeepFM step. At the paper's keep probability 0.5 a mask is one
    random bit per neuron; any other probability compares 16-bit integers, so it
    is a multiple of 1/65536 and the scale matches it exactly.
    """

    def __init__(self, keep_prob: float, generator: torch.Generator, seed: int) -> None:
        super().__init__()
        if not 0.0 < keep_prob <= 1.0:
            raise ValueError(f"dropout keep probability must be in (0, 1], got {keep_prob}")
        self.keep_prob = keep_prob
        self.generator = generator
        self._rng = np.random.default_rng(seed)
        self._threshold = max(1, round(keep_prob * 65536))
        self.scale = 65536 / self._threshold
        self._bit_table = _BIT_TABLE * np.float32(self.scale)

    def mask(self, shape: torch.Size, device: torch.device) -> torch.Tensor | None:
        """This step's float mask: `scale` where a neuron is kept, 0 where it is
        dropped; None when nothing drops (evaluation, or keep probability 1)."""
        if not self.training or self.keep_prob == 1.0:
            return None
        if device.type != "cpu":
            keep = torch.empty(shape, device=device).bernoulli_(
                self._threshold / 65536, generator=self.generator
            )
            return keep.mul_(self.scale)
        n = shape.numel()
        if self._threshold == 32768:
            # One byte of random bits -> eight mask values in a single table lookup.
            random = np.frombuffer(self._rng.bytes((n + 7) // 8), np.uint8)
            values = np.take(self._bit_table, random, axis=0).reshape(-1)[:n]
        else:
            words = np.frombuffer(self._rng.bytes(2 * n), dtype=np.uint16)
            values = (words < self._threshold).astype(np.float32) * np.float32(self.scale)
        return torch.from_numpy(values).view(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.mask(x.shape, x.device)
        return x if mask is None else x * mask


class _Hidden(torch.autograd.Function):
    """Linear, activation and dropout as one autograd node: the activation and the
    mask are applied in place on the matmul's output, and the backward reads the
    activation's derivative off that output (relu: positive exactly where the
    neuron was kept and its input was positive; tanh: 1 - t^2), so no
    pre-activation tensor is kept or passed over again."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        tanh: bool,
        mask: torch.Tensor | None,
        scale: float,
    ) -> torch.Tensor:
        out = torch.addmm(bias, x, weight.t())
        if tanh:
            out.tanh_()
        else:
            out.clamp_min_(0.0)
        if mask is not None:
            out.mul_(mask)
        ctx.tanh, ctx.scale = tanh, scale if mask is not None else 1.0
        ctx.save_for_backward(x, weight, out, mask if tanh else None)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, out, mask = ctx.saved_tensors
        if ctx.tanh:
            t = out / ctx.scale if mask is not None else out
            g = grad * (1.0 - t * t)
            if mask is not None:
                g.mul_(mask)
        else:
            g = torch.ops.aten.threshold_backward(grad, out, 0.0)
            if ctx.scale != 1.0:
                g.mul_(ctx.scale)
        grad_x = g @ weight if ctx.needs_input_grad[0] else None
        return grad_x, g.t() @ x, g.sum(0), None, None, None


class MLP(nn.Module):
    """Hidden layers (Linear, activation, dropout) and a 1-unit output: [B, D] -> [B]."""

    def __init__(
        self,
        in_dim: int,
        sizes: list[int],
        activation: Activation,
        keep_prob: float,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        if activation not in ("relu", "tanh"):
            raise ValueError(f"unknown activation {activation!r}; choose relu or tanh")
        self.tanh = activation == "tanh"
        self.hidden = nn.ModuleList()
        self.dropout = nn.ModuleList()
        for size in sizes:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
            self.hidden.append(nn.Linear(in_dim, size))
            self.dropout.append(KeepDropout(keep_prob, generator, seed))
            in_dim = size
        self.output = nn.Linear(in_dim, 1)

    def layers(self) -> list[tuple[nn.Linear, KeepDropout]]:
        return [
            (cast(nn.Linear, linear), cast(KeepDropout, dropout))
            for linear, dropout in zip(self.hidden, self.dropout, strict=True)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear, dropout in self.layers():
            mask = dropout.mask(torch.Size((x.shape[0], linear.out_features)), x.device)
            x = _Hidden.apply(  # type: ignore[no-untyped-call]
                x, linear.weight, linear.bias, self.tanh, mask, dropout.scale
            )
        out: torch.Tensor = self.output(x).squeeze(1)
        return out

    def flops_per_example(self) -> int:
        """Multiply-adds x 2 of the forward pass."""
        linears = [linear for linear, _ in self.layers()] + [self.output]
        return sum(2 * m.in_features * m.out_features for m in linears)
