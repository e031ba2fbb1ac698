"""The layout of an embedding row and its deterministic initial value.

A row is float32 `[w (order-1 weight, if the model has one) | V ... | optimizer
state]`. The initial row of an id is a pure function of (seed, id): a row that
is evicted and created again, or created on another machine, starts the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.kernels import uniforms
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
        # The integer hashing runs compiled, one pass; numpy's vectorized float32
        # log/sqrt/cos/sin then turn each pair of uniforms into two independent
        # normals (Box-Muller).
        u1 = np.empty((len(ids), pairs), dtype=np.float32)
        theta = np.empty_like(u1)
        uniforms(np.ascontiguousarray(ids, dtype=np.int64), seed, u1, theta)
        radius = np.sqrt(np.float32(-2.0) * np.log(u1)) * np.float32(layout.init_std)
        normal = np.empty((len(ids), 2 * pairs), dtype=np.float32)
        np.multiply(radius, np.cos(theta), out=normal[:, 0::2])
        np.multiply(radius, np.sin(theta), out=normal[:, 1::2])
        rows[:, layout.linear : layout.params] = normal[:, :n_vec]
    return rows
