"""Heads that turn a 2D feature map back into a (C, Z, Y, X) volume."""

import torch
from monai.networks.blocks import Convolution, UpSample
from torch import Tensor, nn

from viscy_models.components.init import icnr_init


class PixelToVoxelHead(nn.Module):
    """Sub-pixel head from 2D features at 1/4 resolution to a full-resolution 3D stack.

    A 2x pixel shuffle upsamples the features, whose channels are then split into ``out_stack_depth + 2`` depth
    positions. A 3D convolution without depth padding (conv + instance norm + PReLU) shrinks the depth to
    ``out_stack_depth``, a 1x1x1 convolution makes 4 sub-pixel channels per output channel, and a second 2x pixel
    shuffle restores full XY resolution.

    Parameters
    ----------
    in_channels : int
        Input channels; must be divisible by ``4 * (out_stack_depth + 2)``.
    out_channels : int
        Output channels.
    out_stack_depth : int
        Output Z slices.
    expansion_ratio : int
        Width of the 3D convolution relative to ``4 * out_channels``.
    pool : bool
        Smooth the first pixel shuffle with pad + 2x2 average pooling (Aitken et al.).

    Raises
    ------
    ValueError
        If ``in_channels`` is not divisible by ``4 * (out_stack_depth + 2)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, out_stack_depth: int, expansion_ratio: int, pool: bool
    ) -> None:
        super().__init__()
        padded_depth = out_stack_depth + 2
        if in_channels % (4 * padded_depth) != 0:
            raise ValueError(
                f"in_channels={in_channels} must be divisible by 4 * (out_stack_depth + 2) = {4 * padded_depth}."
            )
        self.out_stack_depth = out_stack_depth
        self.upsample = UpSample(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=in_channels // 4,
            scale_factor=2,
            mode="pixelshuffle",
            pre_conv=None,
            apply_pad_pool=pool,
        )
        mid_channels = out_channels * expansion_ratio * 4
        self.conv = nn.Sequential(
            Convolution(
                spatial_dims=3,
                in_channels=in_channels // 4 // padded_depth,
                out_channels=mid_channels,
                kernel_size=3,
                padding=(0, 1, 1),
            ),
            nn.Conv3d(mid_channels, out_channels * 4, kernel_size=1),
        )
        icnr_init(self.conv[1], upsample_factor=2, upsample_dims=2)
        self.out = nn.PixelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, in_channels, H, W)`` to ``(B, out_channels, out_stack_depth, 4H, 4W)``."""
        x = self.upsample(x)
        b, c, h, w = x.shape
        padded_depth = self.out_stack_depth + 2
        x = x.reshape(b, c // padded_depth, padded_depth, h, w)
        x = self.conv(x)
        x = self.out(x.transpose(1, 2))
        return x.transpose(1, 2)


class PixelToVoxelShuffleHead(nn.Module):
    """Parameter-free head: one pixel shuffle, then channels split into (out_channels, out_stack_depth).

    Parameters
    ----------
    in_channels : int
        Input channels; must equal ``out_stack_depth * out_channels * xy_scaling**2``.
    out_channels : int
        Output channels.
    out_stack_depth : int
        Output Z slices.
    xy_scaling : int
        Pixel shuffle factor in XY.
    pool : bool
        Smooth the pixel shuffle with pad + average pooling (Aitken et al.).

    Raises
    ------
    ValueError
        If ``in_channels`` does not equal ``out_stack_depth * out_channels * xy_scaling**2``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, out_stack_depth: int = 5, xy_scaling: int = 4, pool: bool = False
    ) -> None:
        super().__init__()
        expected = out_stack_depth * out_channels * xy_scaling**2
        if in_channels != expected:
            raise ValueError(
                f"in_channels={in_channels} must equal out_stack_depth * out_channels * xy_scaling**2 = "
                f"{out_stack_depth} * {out_channels} * {xy_scaling}**2 = {expected}."
            )
        self.out_channels = out_channels
        self.out_stack_depth = out_stack_depth
        self.upsample = UpSample(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=out_stack_depth * out_channels,
            scale_factor=xy_scaling,
            mode="pixelshuffle",
            pre_conv=None,
            apply_pad_pool=pool,
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, in_channels, H, W)`` to ``(B, out_channels, out_stack_depth, s*H, s*W)``."""
        x = self.upsample(x)
        b, _, h, w = x.shape
        return x.reshape(b, self.out_channels, self.out_stack_depth, h, w)


class UnsqueezeHead(nn.Module):
    """Add a singleton depth dimension: ``(B, C, H, W)`` to ``(B, C, 1, H, W)``."""

    def forward(self, x: Tensor) -> Tensor:
        """Insert the depth dimension at position 2."""
        return torch.unsqueeze(x, 2)
