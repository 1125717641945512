from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from viscy_models import _registry


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


@pytest.fixture
def restore_model_registry() -> Iterator[None]:
    """Undo the models a test registers."""
    saved = dict(_registry.MODELS)
    yield
    _registry.MODELS.clear()
    _registry.MODELS.update(saved)
