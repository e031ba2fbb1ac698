"""The layout of an embedding row and its deterministic initial value.

A row is float32 `[w (order-1 weight, if the model has one) | V ... | optimizer
state]`. The initial row of an id is a pure function of (seed, id): a row that
is evicted and created again, or created on another machine, starts the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.hashing import GOLDEN, splitmix64
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


def initial_rows(ids: np.ndarray, layout: RowLayout, seed: int) -> np.ndarray:
    """Fresh rows for int64 `ids`: w = 0, V ~ N(0, init_std) keyed by (seed, id), state = 0."""
    rows = np.zeros((len(ids), layout.width), dtype=np.float32)
    n_vec = layout.vectors * layout.k
    if n_vec and len(ids):
        pairs = (n_vec + 1) // 2
        with np.errstate(over="ignore"):
            base = splitmix64(ids.astype(np.int64).view(np.uint64) ^ np.uint64(seed))
            steps = np.arange(1, pairs + 1, dtype=np.uint64) * GOLDEN
            bits = splitmix64(base[:, None] + steps[None, :])
        # Each 64-bit word gives two 32-bit uniforms in (0, 1), and Box-Muller turns
        # the pair into two independent normals.
        scale = np.float32(2.0**-32)
        u1 = ((bits >> np.uint64(32)).astype(np.float32) + np.float32(0.5)) * scale
        theta = ((bits & np.uint64(0xFFFFFFFF)).astype(np.float32) + np.float32(0.5)) * (
            scale * np.float32(2.0 * np.pi)
        )
        radius = np.sqrt(np.float32(-2.0) * np.log(u1)) * np.float32(layout.init_std)
        normal = np.empty((len(ids), 2 * pairs), dtype=np.float32)
        np.multiply(radius, np.cos(theta), out=normal[:, 0::2])
        np.multiply(radius, np.sin(theta), out=normal[:, 1::2])
        rows[:, layout.linear : layout.params] = normal[:, :n_vec]
    return rows
