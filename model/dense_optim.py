"""The dense weights' optimizer: Adam (the paper's), the global bias in a faster group."""

from __future__ import annotations

import torch
from torch import nn


def dense_optimizer(model: nn.Module, dense_lr: float, bias_lr: float) -> torch.optim.Adam:
    """Adam over the dense weights, the global bias in a faster group of its own.

    The bias must carry the intercept (about -3 for a few percent click rate).
    At the dense rate it would take thousands of steps, and meanwhile every
    embedding row's order-1 weight would absorb a share of it, which values
    unseen in training (new ads, a new day) then lack. Labels also arrive
    ordered (a click at once, a non-click when its window closes), so no
    single early batch tells the base rate: the first one only sets the start.
    """
    rest = dict(model.named_parameters())
    groups: list[dict[str, object]] = [{"params": [rest.pop("bias")], "lr": bias_lr}]
    if rest:
        groups.append({"params": list(rest.values()), "lr": dense_lr})
    # The fused kernel updates every dense tensor of a group in one pass (CPU and CUDA).
    return torch.optim.Adam(groups, fused=True)
