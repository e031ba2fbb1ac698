"""The DNN part of the models: hidden layers with the paper's dropout, as one autograd node."""

from __future__ import annotations

from typing import Any, Literal, cast

import torch
from torch import nn

from model.dropout import KeepDropout

Activation = Literal["relu", "tanh"]


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
        dropouts: list[KeepDropout],
        *params: torch.Tensor,
    ) -> torch.Tensor:
        outs, masks = [x], []
        for i, dropout in enumerate(dropouts):
            weight, bias = params[2 * i], params[2 * i + 1]
            mask = None
            if tanh:
                h = torch.addmm(bias, outs[-1], weight.t())
                h.tanh_()
                mask = dropout.mask(h.shape, h.device)
                if mask is not None:
                    h.mul_(mask)
            else:
                h = outs[-1] @ weight.t()
                dropout.relu_(h, bias)
            masks.append(mask)
            outs.append(h)
        logits = torch.addmm(params[-1], outs[-1], params[-2].t()).squeeze(1)
        ctx.save_for_backward(x, *params)
        ctx.outs, ctx.masks, ctx.tanh = outs[1:], masks, tanh
        ctx.scales = [dropout.scale if dropout.active else 1.0 for dropout in dropouts]
        return logits

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, *params = ctx.saved_tensors
        grads: list[torch.Tensor] = [torch.empty(0)] * len(params)
        outs: list[torch.Tensor] = [x, *ctx.outs]
        # A relu layer's dropout scale multiplies its gradient inside the matmul that
        # makes it (the relu's derivative, 0 or 1, commutes with it): no pass of its
        # own. A tanh layer's mask carries it.
        folded = [1.0 if ctx.tanh else scale for scale in ctx.scales]
        column = grad[:, None]
        grads[-2] = column.t() @ outs[-1]
        grads[-1] = grad.sum(0, keepdim=True)
        g = column * (params[-2] * folded[-1])  # [B, 1] x [1, H]: the last hidden layer's
        grad_x = None
        for i in reversed(range(len(ctx.masks))):
            _activation_backward(g, outs[i + 1], ctx.masks[i], ctx.scales[i], ctx.tanh)
            grads[2 * i] = g.t() @ outs[i]
            grads[2 * i + 1] = g.sum(0)
            if i > 0:
                g = torch.addmm(g.new_zeros(()), g, params[2 * i], beta=0.0, alpha=folded[i - 1])
            elif ctx.needs_input_grad[0]:
                grad_x = g @ params[0]
        return (grad_x, None, None, *grads)


def _activation_backward(
    g: torch.Tensor, out: torch.Tensor, mask: torch.Tensor | None, scale: float, tanh: bool
) -> None:
    """g <- g * d(out)/d(pre-activation), in place, but for a relu layer's dropout
    scale (the caller folds it into g); `mask` is a tanh layer's dropout mask,
    `scale` its scale (1 where nothing drops)."""
    if tanh:
        t = out / scale if mask is not None else out
        g.mul_(1.0 - t * t)
        if mask is not None:
            g.mul_(mask)
        return
    g.masked_fill_(out <= 0, 0.0)  # relu: no gradient where the unit was off


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
        layers = self.layers()
        params = [p for linear, _ in layers for p in (linear.weight, linear.bias)]
        params += [self.output.weight, self.output.bias]
        dropouts = [dropout for _, dropout in layers]
        out: torch.Tensor = _Stack.apply(x, self.tanh, dropouts, *params)  # type: ignore[no-untyped-call]
        return out

    def flops_per_example(self) -> int:
        """Multiply-adds x 2 of the forward pass."""
        linears = [linear for linear, _ in self.layers()] + [self.output]
        return sum(2 * m.in_features * m.out_features for m in linears)
