"""The DNN part of the models: hidden layers with the paper's dropout, as one autograd node."""

from __future__ import annotations

from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn

Activation = Literal["relu", "tanh"]


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


class _Stack(torch.autograd.Function):
    """Every hidden layer (linear, activation, dropout) and the 1-unit output as one
    autograd node. Activations and masks are applied in place on each matmul's
    output, and the backward reads each activation's derivative off that output
    (relu: positive exactly where the neuron was kept and its input was positive;
    tanh: 1 - t^2), working in place on gradient buffers it owns: no
    pre-activation tensors, and one pass per layer for activation and dropout."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        tanh: bool,
        masks: list[torch.Tensor | None],
        scales: list[float],
        *params: torch.Tensor,
    ) -> torch.Tensor:
        outs = [x]
        for i, mask in enumerate(masks):
            h = torch.addmm(params[2 * i + 1], outs[-1], params[2 * i].t())
            if tanh:
                h.tanh_()
            else:
                h.clamp_min_(0.0)
            if mask is not None:
                h.mul_(mask)
            outs.append(h)
        logits = torch.addmm(params[-1], outs[-1], params[-2].t()).squeeze(1)
        ctx.save_for_backward(x, *params)
        ctx.outs, ctx.masks, ctx.scales, ctx.tanh = outs[1:], masks, scales, tanh
        return logits

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, *params = ctx.saved_tensors
        grads: list[torch.Tensor] = [torch.empty(0)] * len(params)
        outs: list[torch.Tensor] = [x, *ctx.outs]
        column = grad[:, None]
        grads[-2] = column.t() @ outs[-1]
        grads[-1] = grad.sum(0, keepdim=True)
        g = column * params[-2]  # [B, 1] x [1, H]: the last hidden layer's gradient
        grad_x = None
        for i in reversed(range(len(ctx.masks))):
            _activation_backward(g, outs[i + 1], ctx.tanh, ctx.masks[i], ctx.scales[i])
            grads[2 * i] = g.t() @ outs[i]
            grads[2 * i + 1] = g.sum(0)
            if i > 0:
                g = g @ params[2 * i]
            elif ctx.needs_input_grad[0]:
                grad_x = g @ params[0]
        return (grad_x, None, None, None, *grads)


def _activation_backward(
    g: torch.Tensor, out: torch.Tensor, tanh: bool, mask: torch.Tensor | None, scale: float
) -> None:
    """g <- g * d(out)/d(pre-activation), in place."""
    if tanh:
        t = out / scale if mask is not None else out
        g.mul_(1.0 - t * t)
        if mask is not None:
            g.mul_(mask)
        return
    torch.ops.aten.threshold_backward.grad_input(g, out, 0.0, grad_input=g)
    if mask is not None:
        g.mul_(scale)


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
        masks, scales, params = [], [], []
        for linear, dropout in self.layers():
            masks.append(dropout.mask(torch.Size((x.shape[0], linear.out_features)), x.device))
            scales.append(dropout.scale)
            params += [linear.weight, linear.bias]
        params += [self.output.weight, self.output.bias]
        out: torch.Tensor = _Stack.apply(x, self.tanh, masks, scales, *params)  # type: ignore[no-untyped-call]
        return out

    def flops_per_example(self) -> int:
        """Multiply-adds x 2 of the forward pass."""
        linears = [linear for linear, _ in self.layers()] + [self.output]
        return sum(2 * m.in_features * m.out_features for m in linears)
