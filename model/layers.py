"""Building blocks shared by the models. Symbols: B examples, F fields, N entries,
U unique rows, k latent size, P parameters per row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

Shape = Literal["constant", "increasing", "decreasing", "diamond"]
Activation = Literal["relu", "tanh"]


@dataclass(frozen=True)
class SparseBatch:
    """Entries of a batch mapped to unique rows: `index` [N] into U, `x` [N] values,
    `slot` [N] = example * F + field, `example` [N] = slot // F. The first
    `single_fields` * B entries hold one value per (example, field), field-major."""

    index: torch.Tensor
    x: torch.Tensor
    slot: torch.Tensor
    example: torch.Tensor
    batch_size: int
    num_fields: int
    single_fields: int = 0


def pooled(values: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
    """Σ x·values per (example, field): [U, D] row values -> [B, F, D] field embeddings."""
    b, f, d = batch.batch_size, batch.num_fields, values.shape[1]
    per_entry = values.index_select(0, batch.index) * batch.x[:, None]
    head = b * batch.single_fields
    # Single-valued fields need no scatter: their entries already are [F_single, B, D].
    single = per_entry[:head].view(batch.single_fields, b, d).transpose(0, 1)
    if batch.single_fields == f:
        return single
    out = per_entry.new_zeros((b * f, d))
    out.index_add_(0, batch.slot[head:], per_entry[head:])
    out = out.view(b, f, d)
    return torch.cat([single, out[:, batch.single_fields :]], dim=1)


def linear_term(w: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
    """Σ_i w_i x_i per example: [U] order-1 weights -> [B]."""
    per_entry = w.index_select(0, batch.index) * batch.x
    head = batch.batch_size * batch.single_fields
    out = per_entry[:head].view(batch.single_fields, batch.batch_size).sum(dim=0)
    if head < len(per_entry):
        out = out.index_add(0, batch.example[head:], per_entry[head:])
    return out


def fm_interaction(e: torch.Tensor) -> torch.Tensor:
    """Σ_{i<j} <e_i, e_j> = ½[(Σ_i e_i)² - Σ_i e_i²] summed over k: [B, F, k] -> [B]."""
    square_of_sum = e.sum(dim=1).pow(2)
    sum_of_squares = e.pow(2).sum(dim=1)
    return 0.5 * (square_of_sum - sum_of_squares).sum(dim=1)


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


class KeepDropout(nn.Module):
    """Dropout given the paper's keep probability, with masks from its own seeded
    generators so that models trained side by side stay deterministic.

    On CPU the mask comes from numpy's PCG64 as 16-bit integers: torch's CPU
    bernoulli_ costs about a third of a DeepFM step. The keep probability is
    then a multiple of 1/65536 and the scale matches it exactly.
    """

    def __init__(self, keep_prob: float, generator: torch.Generator, seed: int) -> None:
        super().__init__()
        if not 0.0 < keep_prob <= 1.0:
            raise ValueError(f"dropout keep probability must be in (0, 1], got {keep_prob}")
        self.keep_prob = keep_prob
        self.generator = generator
        self._rng = np.random.default_rng(seed)
        self._threshold = max(1, round(keep_prob * 65536))
        self._scale = np.float32(65536 / self._threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.keep_prob == 1.0:
            return x
        if x.is_cuda:
            mask = torch.empty_like(x).bernoulli_(self.keep_prob, generator=self.generator)
            return x * mask / self.keep_prob
        bits = np.frombuffer(self._rng.bytes(2 * x.numel()), dtype=np.uint16)
        scaled = (bits < self._threshold).astype(np.float32) * self._scale
        return x * torch.from_numpy(scaled).view(x.shape)


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
        act: type[nn.Module] = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
        layers: list[nn.Module] = []
        for size in sizes:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
            layers += [nn.Linear(in_dim, size), act(), KeepDropout(keep_prob, generator, seed)]
            in_dim = size
        layers.append(nn.Linear(in_dim, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x).squeeze(1)
        return out

    def flops_per_example(self) -> int:
        """Multiply-adds x 2 of the forward pass."""
        return sum(2 * m.in_features * m.out_features for m in self.net if isinstance(m, nn.Linear))
