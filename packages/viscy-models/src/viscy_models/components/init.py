"""Weight initialization helpers."""

from collections.abc import Callable

import torch
from timm.layers import trunc_normal_
from torch import Tensor, nn


def icnr_init(
    conv: nn.Module,
    upsample_factor: int,
    upsample_dims: int,
    init: Callable[[Tensor], Tensor] = nn.init.kaiming_normal_,
) -> None:
    """Initialize a convolution that feeds a pixel shuffle with ICNR, in place.

    ICNR (Aitken et al., 2017) gives the ``upsample_factor ** upsample_dims`` sub-pixel output channels that a pixel
    shuffle merges into one channel the same kernel, so the freshly initialized sub-pixel convolution behaves like a
    nearest-neighbour resize and produces no checkerboard artifacts.

    Parameters
    ----------
    conv : nn.Module
        Convolution with a ``weight`` of shape ``(out, in, *kernel)``.
    upsample_factor : int
        Pixel shuffle factor along each upsampled dimension.
    upsample_dims : int
        Number of dimensions the pixel shuffle upsamples (2 for a 2D pixel shuffle, even after a 3D conv).
    init : Callable[[Tensor], Tensor]
        In-place initializer applied to the shared kernels.

    Raises
    ------
    ValueError
        If the output channels are not divisible by ``upsample_factor ** upsample_dims``.
    """
    weight = conv.weight
    sub_pixels = upsample_factor**upsample_dims
    if weight.shape[0] % sub_pixels != 0:
        raise ValueError(
            f"ICNR needs output channels divisible by {upsample_factor}**{upsample_dims}={sub_pixels}, "
            f"got weight shape {tuple(weight.shape)}."
        )
    kernel = torch.empty((weight.shape[0] // sub_pixels, *weight.shape[1:]), dtype=weight.dtype, device=weight.device)
    init(kernel)
    with torch.no_grad():
        weight.copy_(kernel.repeat_interleave(sub_pixels, dim=0))


def init_convnext_weights(module: nn.Module) -> None:
    """Initialize one layer as ConvNeXt does; use it as ``model.apply(init_convnext_weights)``.

    ``nn.Conv2d`` and ``nn.Linear`` weights are drawn from timm's truncated normal (std 0.02, cut at +-2), their
    biases set to zero; ``nn.LayerNorm`` (including timm's ``LayerNorm2d``) gets weight one and bias zero. Other
    layers are left alone. On a freshly built module this draws exactly the weights that timm's ConvNeXt
    initialization draws from the same random state.

    Parameters
    ----------
    module : nn.Module
        The layer to initialize in place.
    """
    if isinstance(module, nn.Conv2d | nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
