"""Separable Gaussian filtering of batched volumes with a different sigma for every sample."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["BORDER_TYPES", "gaussian_kernels_1d", "separable_gaussian_filter"]

#: padding modes accepted by :func:`separable_gaussian_filter` (those of ``torch.nn.functional.pad``)
BORDER_TYPES = ("constant", "reflect", "replicate", "circular")


def gaussian_kernels_1d(sigmas: Tensor, truncated: float) -> Tensor:
    """Sampled-erf Gaussian kernels (as MONAI ``GaussianSmooth``), one row per sigma.

    All rows share the radius ``int(max(max(sigmas) * truncated, 0.5) + 0.5)``, the radius MONAI
    uses for the largest sigma; each row sums to 1, and a sigma of 0 gives a unit impulse.

    Parameters
    ----------
    sigmas : Tensor
        Shape (N,), non-negative, in voxels.
    truncated : float
        Kernel radius in units of sigma.

    Returns
    -------
    Tensor
        Shape (N, 2 * radius + 1), same dtype and device as ``sigmas``.
    """
    radius = int(max(float(sigmas.max()) * truncated, 0.5) + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=sigmas.dtype, device=sigmas.device)
    inverse_scale = 1.0 / (math.sqrt(2.0) * sigmas.clamp_min(1e-12)).unsqueeze(1)
    kernels = 0.5 * (torch.erf((offsets + 0.5) * inverse_scale) - torch.erf((offsets - 0.5) * inverse_scale))
    return kernels / kernels.sum(dim=1, keepdim=True)


def separable_gaussian_filter(data: Tensor, sigmas: Tensor, truncated: float, border_type: str) -> Tensor:
    """Blur every sample of a (N, C, Z, Y, X) batch with its own Gaussian, one axis at a time.

    Parameters
    ----------
    data : Tensor
        Shape (N, C, Z, Y, X).
    sigmas : Tensor
        Shape (N, 3): the sigma of each sample along Z, Y and X, in voxels. An axis whose sigmas
        are all zero is skipped.
    truncated : float
        Kernel radius in units of sigma.
    border_type : str
        Padding mode, one of :data:`BORDER_TYPES` ("constant" pads with zeros).

    Returns
    -------
    Tensor
        The blurred batch, same shape, dtype and device.
    """
    n, c = data.shape[:2]
    out = data.reshape(1, n * c, *data.shape[2:])
    for axis in range(3):
        axis_sigmas = sigmas[:, axis].to(torch.float64)
        if not bool((axis_sigmas > 0).any()):
            continue
        kernels = gaussian_kernels_1d(axis_sigmas, truncated)
        radius = kernels.shape[1] // 2
        weight_shape = [n * c, 1, 1, 1, 1]
        weight_shape[2 + axis] = kernels.shape[1]
        weight = kernels.repeat_interleave(c, dim=0).reshape(weight_shape).to(device=data.device, dtype=data.dtype)
        padding = [0] * 6
        padding[2 * (2 - axis)] = padding[2 * (2 - axis) + 1] = radius
        out = F.conv3d(F.pad(out, padding, mode=border_type), weight, groups=n * c)
    return out.reshape(data.shape)
