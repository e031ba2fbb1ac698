"""Per-row optimizers for embedding rows; their state travels inside the row.

A row is `[params (P) | state (S)]` as float32. Every optimizer updates the
rows of one batch in place, vectorized over rows, and receives the gradient of
the summed loss (the per-example formulation of McMahan et al. 2013), so that
FTRL's learning-rate schedule means what the paper says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


class SparseOptimizer(Protocol):
    @property
    def name(self) -> str: ...

    def state_width(self, params: int) -> int: ...

    def step(self, params: torch.Tensor, state: torch.Tensor, grad: torch.Tensor) -> None:
        """Updates `params` [U, P] and `state` [U, S] in place from `grad` [U, P]."""
        ...


@dataclass(frozen=True)
class SparseAdagrad:
    """Adagrad with an initial accumulator (TensorFlow's 0.1 by default).

    A batch sums the gradients of every occurrence of a row, so a frequent row
    takes a step of about `lr` per batch while the accumulator keeps a row
    seen once or twice from jumping by `lr` on its first noisy gradient.
    """

    lr: float = 0.05
    initial_accumulator: float = 0.1
    eps: float = 1e-10
    l2: float = 0.0
    name: str = "adagrad"

    def state_width(self, params: int) -> int:
        return params

    def step(self, params: torch.Tensor, state: torch.Tensor, grad: torch.Tensor) -> None:
        if self.l2:
            grad = grad + self.l2 * params
        state.addcmul_(grad, grad)
        denom = state.add(self.initial_accumulator).sqrt_().add_(self.eps)
        params.addcdiv_(grad, denom, value=-self.lr)


@dataclass(frozen=True)
class SparseAdam:
    """Lazy Adam: moments and the bias-correction step count are per row."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    l2: float = 0.0
    name: str = "adam"

    def state_width(self, params: int) -> int:
        return 2 * params + 1

    def step(self, params: torch.Tensor, state: torch.Tensor, grad: torch.Tensor) -> None:
        p = params.shape[1]
        m, v, t = state[:, :p], state[:, p : 2 * p], state[:, 2 * p :]
        if self.l2:
            grad = grad + self.l2 * params
        t.add_(1.0)
        m.mul_(self.beta1).add_(grad, alpha=1.0 - self.beta1)
        v.mul_(self.beta2).addcmul_(grad, grad, value=1.0 - self.beta2)
        m_hat = m / (1.0 - self.beta1**t)
        v_hat = v / (1.0 - self.beta2**t)
        params.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))


@dataclass(frozen=True)
class SparseFTRL:
    """FTRL-Proximal (McMahan et al. 2013, algorithm 1); state is z and n per parameter."""

    alpha: float = 0.1
    beta: float = 1.0
    l1: float = 1.0
    l2: float = 1.0
    name: str = "ftrl"

    def state_width(self, params: int) -> int:
        return 2 * params

    def step(self, params: torch.Tensor, state: torch.Tensor, grad: torch.Tensor) -> None:
        p = params.shape[1]
        z, n = state[:, :p], state[:, p:]
        sigma = ((n + grad * grad).sqrt() - n.sqrt()) / self.alpha
        z.add_(grad - sigma * params)
        n.addcmul_(grad, grad)
        shrunk = z - torch.sign(z) * self.l1
        denom = (self.beta + n.sqrt()) / self.alpha + self.l2
        params.copy_(torch.where(z.abs() > self.l1, -shrunk / denom, torch.zeros_like(z)))


@dataclass(frozen=True)
class SplitRows:
    """One optimizer for a row's first `head` parameters (the order-1 weight),
    another for the rest (the latent vectors); the state is theirs side by side."""

    head: int
    first: SparseOptimizer
    rest: SparseOptimizer

    @property
    def name(self) -> str:
        return f"{self.first.name}+{self.rest.name}"

    def state_width(self, params: int) -> int:
        return self.first.state_width(self.head) + self.rest.state_width(params - self.head)

    def step(self, params: torch.Tensor, state: torch.Tensor, grad: torch.Tensor) -> None:
        h, s = self.head, self.first.state_width(self.head)
        self.first.step(params[:, :h], state[:, :s], grad[:, :h])
        self.rest.step(params[:, h:], state[:, s:], grad[:, h:])


def make_sparse_optimizer(
    name: str, lr: float | None = None, l2: float = 0.0, initial_accumulator: float = 0.1
) -> SparseOptimizer:
    if name == "adagrad":
        return SparseAdagrad(lr=lr or 0.05, initial_accumulator=initial_accumulator, l2=l2)
    if name == "adam":
        return SparseAdam(lr=lr or 1e-3, l2=l2)
    if name == "ftrl":
        return SparseFTRL(alpha=lr or 0.1)
    raise ValueError(f"unknown sparse optimizer {name!r}; choose adagrad, adam or ftrl")
