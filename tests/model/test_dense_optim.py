import torch
from torch import nn

from model.dense_optim import dense_optimizer


def test_the_bias_gets_its_own_learning_rate() -> None:
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(1))
            self.layer = nn.Linear(3, 1)

    optimizer = dense_optimizer(Model(), dense_lr=1e-3, bias_lr=0.05)
    lrs = [(len(group["params"]), group["lr"]) for group in optimizer.param_groups]
    assert lrs == [(1, 0.05), (2, 1e-3)]
    assert optimizer.defaults["fused"] is True
