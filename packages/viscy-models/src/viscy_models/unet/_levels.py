"""The encoder-decoder pass shared by the 2D and 2.5D U-Nets."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def encode_decode(
    x: Tensor,
    down_blocks: Sequence[nn.Module],
    bottom: nn.Module,
    up_blocks: Sequence[nn.Module],
    pool: nn.Module,
    upsample: nn.Module,
    skip_convs: Sequence[nn.Module] | None = None,
) -> Tensor:
    """Run the U-Net levels: each down block keeps a skip and pools, then each up block merges a skip.

    Parameters
    ----------
    x : Tensor
        Input of the first down block.
    down_blocks : Sequence[nn.Module]
        Encoder blocks, from the highest resolution down.
    bottom : nn.Module
        Block between the encoder and the decoder.
    up_blocks : Sequence[nn.Module]
        Decoder blocks, from the lowest resolution up; block ``i`` takes the upsampled features concatenated (on
        channels) with the skip of down block ``len(down_blocks) - 1 - i``.
    pool : nn.Module
        Downsampling after each down block.
    upsample : nn.Module
        Upsampling before each up block.
    skip_convs : Sequence[nn.Module] or None
        Layer applied to each down block's output before it is kept as a skip; None keeps it as is.

    Returns
    -------
    Tensor
        Output of the last up block.
    """
    skips = []
    for i, block in enumerate(down_blocks):
        x = block(x)
        skips.append(x if skip_convs is None else skip_convs[i](x))
        x = pool(x)
    x = bottom(x)
    for block, skip in zip(up_blocks, reversed(skips), strict=True):
        x = block(torch.cat([upsample(x), skip], dim=1))
    return x
