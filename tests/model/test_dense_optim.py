import torch
from torch import nn

from model.dense_optim import FusedAdam, dense_optimizer


def _twins() -> tuple[nn.Sequential, nn.Sequential]:
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 1))
    b = nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 1))
    b.load_state_dict(a.state_dict())
    return a, b


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, seed: int) -> None:
    data = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 7, generator=data)
        loss = model(x).square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def _groups(model: nn.Module) -> list[dict[str, object]]:
    first, second = list(model.parameters())[:2], list(model.parameters())[2:]
    return [{"params": first, "lr": 0.01}, {"params": second, "lr": 0.001, "weight_decay": 0.1}]


def _trained(steps: int) -> tuple[nn.Sequential, FusedAdam, nn.Sequential, torch.optim.Adam]:
    """Twin models after `steps` steps, one with FusedAdam, one with torch's fused Adam."""
    ours, theirs = _twins()
    mine = FusedAdam(_groups(ours))
    reference = torch.optim.Adam(_groups(theirs), fused=True)
    _train(ours, mine, steps, seed=1)
    _train(theirs, reference, steps, seed=1)
    return ours, mine, theirs, reference


def test_fused_adam_steps_exactly_as_torchs_fused_adam() -> None:
    ours, mine, theirs, reference = _trained(5)
    ours(torch.ones(2, 7)).sum().backward()
    assert mine._grads() is not None  # the steps after the first one took the direct path
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p, q)
    assert mine.state_dict()["state"].keys() == reference.state_dict()["state"].keys()


def test_fused_adam_resumes_from_a_saved_state_and_skips_parameters_without_gradient() -> None:
    ours, mine, theirs, reference = _trained(3)
    resumed = FusedAdam(_groups(ours))
    resumed.load_state_dict(mine.state_dict())
    # a frozen layer has no gradient: the step must leave it alone, as torch's does
    for model in (ours, theirs):
        model[0].weight.requires_grad_(False)
    _train(ours, resumed, 3, seed=3)
    _train(theirs, reference, 3, seed=3)
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p, q)


def test_the_bias_gets_its_own_learning_rate() -> None:
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(1))
            self.layer = nn.Linear(3, 1)

    optimizer = dense_optimizer(Model(), dense_lr=1e-3, bias_lr=0.05)
    lrs = [(len(group["params"]), group["lr"]) for group in optimizer.param_groups]
    assert lrs == [(1, 0.05), (2, 1e-3)]
