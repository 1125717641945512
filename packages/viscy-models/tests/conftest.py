from collections.abc import Callable

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _params_without_grad(model: nn.Module) -> list[str]:
    return [
        name for name, param in model.named_parameters() if param.grad is None or not torch.isfinite(param.grad).all()
    ]


@pytest.fixture
def params_without_grad() -> Callable[[nn.Module], list[str]]:
    """Names of parameters whose gradient is missing or not finite after a backward pass."""
    return _params_without_grad
