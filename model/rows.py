"""The layout of an embedding row and its deterministic initial value.

A row is float32 `[w (order-1 weight, if the model has one) | V ... | optimizer
state]`. The initial row of an id is a pure function of (seed, id): a row that
is evicted and created again, or created on another machine, starts the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.hashing import GOLDEN, mix64
from model.sparse_optim import SparseOptimizer


@dataclass(frozen=True)
class RowLayout:
    """`linear` order-1 weights (0 or 1), then `vectors` latent vectors of size `k`."""

    linear: int
    vectors: int
    k: int
    optimizer: SparseOptimizer
    init_std: float = 0.01

    @property
    def params(self) -> int:
        return self.linear + self.vectors * self.k

    @property
    def width(self) -> int:
        return self.params + self.optimizer.state_width(self.params)

    def describe(self) -> dict[str, object]:
        return {
            "linear": self.linear,
            "vectors": self.vectors,
            "k": self.k,
            "optimizer": self.optimizer.name,
            "width": self.width,
        }


def _splitmix64(x: np.ndarray) -> np.ndarray:
    return mix64(x + GOLDEN)


def initial_rows(ids: np.ndarray, layout: RowLayout, seed: int) -> np.ndarray:
    """Fresh rows for int64 `ids`: w = 0, V ~ N(0, init_std) keyed by (seed, id), state = 0."""
    rows = np.zeros((len(ids), layout.width), dtype=np.float32)
    n_vec = layout.vectors * layout.k
    if n_vec and len(ids):
        with np.errstate(over="ignore"):
            base = _splitmix64(ids.astype(np.int64).view(np.uint64) ^ np.uint64(seed))
            counters = base[:, None] + np.arange(2 * n_vec, dtype=np.uint64)[None, :] * GOLDEN
            bits = _splitmix64(counters)
        uniform = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
        # Box-Muller over disjoint pairs of uniforms.
        u1, u2 = uniform[:, 0::2], uniform[:, 1::2]
        normal = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        rows[:, layout.linear : layout.params] = layout.init_std * normal
    return rows
