"""Reparameterization shared by the VAEs."""

import torch
from torch import Tensor


def reparameterize(mean: Tensor, log_variance: Tensor, training: bool) -> Tensor:
    """Sample ``z = mean + eps * exp(log_variance / 2)`` in training; return ``mean`` in evaluation.

    Returning the mean in evaluation makes inference deterministic, as MONAI's ``VarAutoEncoder`` does.
    """
    if not training:
        return mean
    return mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
