"""Fully convolutional masked autoencoder (ConvNeXt-V2 FCMAE) for pretraining and fine-tuning.

Masking is dense: masked positions are zeroed, and the per-token LayerNorm and MLP of each block run only on the
unmasked tokens, so masked positions never leak into the statistics of the visible ones.

The layers take ``unmasked``, a ``(B, 1, h, w)`` bool tensor that is True where visible (or None for no masking), at
their output resolution or any coarser one that divides it: each layer upsamples it to its own resolution.
"""

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from timm.layers import DropPath, GlobalResponseNormMlp, LayerNorm2d, create_conv2d
from timm.models.convnext import Downsample
from torch import BoolTensor, Tensor, nn

from viscy_models._registry import register_model
from viscy_models.components.blocks import UNeXt2Decoder
from viscy_models.components.heads import PixelToVoxelHead, PixelToVoxelShuffleHead
from viscy_models.components.init import init_convnext_weights
from viscy_models.components.stems import fold_depth_into_channels


def generate_mask(
    target_shape: Sequence[int],
    stride: int,
    mask_ratio: float,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
) -> BoolTensor:
    """Draw a random patch mask with exactly ``int(num_patches * mask_ratio)`` masked patches per sample.

    Parameters
    ----------
    target_shape : Sequence[int]
        Shape of the image to mask, ``(B, ..., H, W)``.
    stride : int
        Patch size in pixels; ``H`` and ``W`` must be divisible by it.
    mask_ratio : float
        Fraction of patches to mask, in [0, 1].
    device : str or torch.device
        Device of the returned mask.
    generator : torch.Generator or None
        Source of randomness (a CPU generator); None uses torch's default generator.

    Returns
    -------
    BoolTensor
        ``(B, 1, H // stride, W // stride)``, True where masked.

    Raises
    ------
    ValueError
        If ``mask_ratio`` is outside [0, 1] or the image is not divisible into patches.
    """
    if not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}.")
    batch_size, height, width = target_shape[0], target_shape[-2], target_shape[-1]
    if height % stride or width % stride:
        raise ValueError(f"Image size {height}x{width} is not divisible by the patch size {stride}.")
    grid = (height // stride, width // stride)
    num_patches = grid[0] * grid[1]
    num_masked = int(num_patches * mask_ratio)
    ranks = torch.rand(batch_size, num_patches, generator=generator).argsort(dim=1)
    mask = torch.zeros(batch_size, num_patches, dtype=torch.bool)
    mask.scatter_(1, ranks[:, :num_masked], True)
    return mask.reshape(batch_size, 1, *grid).to(device)


def upsample_mask(mask: BoolTensor, target_shape: Sequence[int]) -> BoolTensor:
    """Nearest-neighbour upsample a ``(B, 1, h, w)`` mask to the spatial size ``target_shape[-2:]``.

    A mask that already has that size is returned as is.

    Raises
    ------
    ValueError
        If the target size is not an integer multiple of the mask size.
    """
    height, width = target_shape[-2], target_shape[-1]
    if (height, width) == tuple(mask.shape[-2:]):
        return mask
    if height % mask.shape[-2] or width % mask.shape[-1]:
        raise ValueError(f"Cannot upsample a mask of size {tuple(mask.shape[-2:])} to {(height, width)}.")
    return mask.repeat_interleave(height // mask.shape[-2], dim=-2).repeat_interleave(width // mask.shape[-1], dim=-1)


def masked_patchify(features: Tensor, unmasked: BoolTensor | None = None) -> Tensor:
    """Gather the unmasked pixels of ``(B, C, H, W)`` features as tokens ``(B, L, C)``.

    Parameters
    ----------
    features : Tensor
        ``(B, C, H, W)`` feature map.
    unmasked : BoolTensor or None
        ``(B, 1, H, W)``, True where visible; every sample must have the same number of visible pixels.
        None keeps all ``H * W`` pixels.

    Returns
    -------
    Tensor
        ``(B, L, C)`` tokens in row-major pixel order.
    """
    b, c = features.shape[:2]
    if unmasked is None:
        return features.flatten(2).transpose(1, 2)
    return features.permute(0, 2, 3, 1)[unmasked[:, 0]].reshape(b, -1, c)


def masked_unpatchify(features: Tensor, out_shape: Sequence[int], unmasked: BoolTensor | None = None) -> Tensor:
    """Scatter tokens ``(B, L, C)`` back to a ``(B, C, H, W)`` map, with zeros at masked pixels.

    Parameters
    ----------
    features : Tensor
        ``(B, L, C)`` tokens from :func:`masked_patchify`.
    out_shape : Sequence[int]
        ``(B, C, H, W)`` of the output.
    unmasked : BoolTensor or None
        The mask given to :func:`masked_patchify`.

    Returns
    -------
    Tensor
        ``(B, C, H, W)`` feature map.
    """
    b, c, h, w = out_shape
    if unmasked is None:
        return features.transpose(1, 2).reshape(b, c, h, w)
    out = features.new_zeros(b, h, w, c)
    out[unmasked[:, 0]] = features.reshape(-1, c)
    return out.permute(0, 3, 1, 2)


def _tokenwise(fn: Callable[[Tensor], Tensor], x: Tensor, unmasked: BoolTensor | None) -> Tensor:
    """Apply a channel-last function to the visible pixels of ``(B, C, H, W)`` only; masked pixels become 0."""
    tokens = masked_patchify(x, unmasked)
    # (B, L, 1, C): timm's channel-last GRN reduces over dims (1, 2), i.e. over the tokens of each sample.
    tokens = fn(tokens.unsqueeze(2)).squeeze(2)
    return masked_unpatchify(tokens, (x.shape[0], tokens.shape[-1], *x.shape[2:]), unmasked)


class MaskedConvNeXtV2Block(nn.Module):
    """ConvNeXt-V2 block that skips masked pixels: depthwise conv, then LayerNorm and GRN MLP on visible pixels.

    Masked pixels are zeroed before the convolution and carry only the (zeroed) shortcut after it, so they never
    reach the statistics of the visible ones.

    Parameters
    ----------
    in_channels : int
        Input channels.
    out_channels : int or None
        Output channels, a multiple of ``in_channels`` (depthwise convolution); None for ``in_channels``.
    kernel_size : int
        Depthwise convolution kernel size.
    stride : int
        Depthwise convolution stride.
    mlp_ratio : int
        Hidden width of the MLP relative to ``out_channels``.
    drop_path : float
        Stochastic depth rate.

    Raises
    ------
    ValueError
        If ``out_channels`` is not a multiple of ``in_channels``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: int = 7,
        stride: int = 1,
        mlp_ratio: int = 4,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        if out_channels % in_channels:
            raise ValueError(
                f"out_channels={out_channels} must be a multiple of in_channels={in_channels} (depthwise convolution)."
            )
        self.dwconv = create_conv2d(
            in_channels, out_channels, kernel_size=kernel_size, stride=stride, depthwise=True, bias=False
        )
        self.layernorm = nn.LayerNorm(out_channels)
        self.mlp = GlobalResponseNormMlp(out_channels, out_channels * mlp_ratio, use_conv=False)
        if in_channels != out_channels or stride > 1:
            self.shortcut = Downsample(in_channels, out_channels, stride=stride)
        else:
            self.shortcut = nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, unmasked: BoolTensor | None = None) -> Tensor:
        """Map ``(B, in_channels, H, W)`` to ``(B, out_channels, H / stride, W / stride)``; the input is unchanged."""
        if unmasked is not None:
            x = x * upsample_mask(unmasked, x.shape)
        shortcut = self.shortcut(x)
        x = self.dwconv(x)
        if unmasked is not None:
            unmasked = upsample_mask(unmasked, x.shape)
        x = _tokenwise(lambda tokens: self.mlp(self.layernorm(tokens)), x, unmasked)
        return shortcut + self.drop_path(x)


class MaskedConvNeXtV2Stage(nn.Module):
    """Optional LayerNorm + strided conv downsampling followed by masked ConvNeXt-V2 blocks.

    Parameters
    ----------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels.
    kernel_size : int
        Depthwise convolution kernel size of the blocks.
    stride : int
        Downsampling factor (kernel and stride of the downsampling conv); with stride 1 and equal channels there is
        no downsampling layer.
    num_blocks : int
        Number of blocks.
    drop_path_rates : Sequence[float] or None
        Stochastic depth rate per block; None for 0.

    Raises
    ------
    ValueError
        If ``drop_path_rates`` does not have ``num_blocks`` entries.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 7,
        stride: int = 2,
        num_blocks: int = 2,
        drop_path_rates: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        rates = drop_path_rates if drop_path_rates is not None else (0.0,) * num_blocks
        if len(rates) != num_blocks:
            raise ValueError(f"Need {num_blocks} drop path rates, got {len(rates)}.")
        if in_channels != out_channels or stride > 1:
            self.downsample = nn.Sequential(
                LayerNorm2d(in_channels),
                nn.Conv2d(in_channels, out_channels, kernel_size=stride, stride=stride),
            )
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.ModuleList(
            MaskedConvNeXtV2Block(out_channels, kernel_size=kernel_size, drop_path=rate) for rate in rates
        )

    def forward(self, x: Tensor, unmasked: BoolTensor | None = None) -> Tensor:
        """Downsample ``(B, in_channels, H, W)`` by ``stride``, then apply the blocks."""
        x = self.downsample(x)
        if unmasked is not None:
            unmasked = upsample_mask(unmasked, x.shape)
        for block in self.blocks:
            x = block(x, unmasked)
        return x


class MaskedAdaptiveProjection(nn.Module):
    """Patchify stem for 3D stacks (Conv3d, depth folded into channels) or 2D images (Conv2d), then LayerNorm.

    Parameters
    ----------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels.
    kernel_size_2d : int or tuple[int, int]
        Patch size (kernel and stride) in (Y, X).
    kernel_depth : int
        Patch depth (kernel and stride) in Z for stacks.
    in_stack_depth : int
        Z slices of stack inputs; must be divisible by ``kernel_depth``.

    Raises
    ------
    ValueError
        If ``in_stack_depth`` is not divisible by ``kernel_depth`` or ``out_channels`` by the folded depth.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size_2d: int | Sequence[int] = 4,
        kernel_depth: int = 5,
        in_stack_depth: int = 5,
    ) -> None:
        super().__init__()
        kernel_2d = (kernel_size_2d,) * 2 if isinstance(kernel_size_2d, int) else tuple(kernel_size_2d)
        if in_stack_depth % kernel_depth != 0:
            raise ValueError(f"in_stack_depth={in_stack_depth} is not divisible by kernel_depth={kernel_depth}.")
        out_depth = in_stack_depth // kernel_depth
        if out_channels % out_depth != 0:
            raise ValueError(f"out_channels={out_channels} is not divisible by the folded depth {out_depth}.")
        kernel_3d = (kernel_depth, *kernel_2d)
        self.conv3d = nn.Conv3d(in_channels, out_channels // out_depth, kernel_size=kernel_3d, stride=kernel_3d)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size=kernel_2d, stride=kernel_2d)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: Tensor, unmasked: BoolTensor | None = None) -> Tensor:
        """Project ``(B, C, D, H, W)`` (``D == 1`` uses the 2D conv) to normalized ``(B, out_channels, H/k, W/k)``."""
        x = self.conv2d(x[:, :, 0]) if x.shape[2] == 1 else fold_depth_into_channels(self.conv3d(x))
        if unmasked is not None:
            unmasked = upsample_mask(unmasked, x.shape)
        return _tokenwise(self.norm, x, unmasked)


class MaskedMultiscaleEncoder(nn.Module):
    """ConvNeXt-V2 encoder with random patch masking, returning one feature map per stage.

    Parameters
    ----------
    in_channels : int
        Input channels.
    stage_blocks : Sequence[int]
        Blocks per stage.
    dims : Sequence[int]
        Channels per stage.
    drop_path_rate : float
        Maximum stochastic depth rate, increasing linearly over blocks.
    stem_kernel_size : tuple[int, int, int]
        Stem patch size in (Z, Y, X).
    in_stack_depth : int
        Z slices of stack inputs.
    """

    def __init__(
        self,
        in_channels: int,
        stage_blocks: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        drop_path_rate: float = 0.0,
        stem_kernel_size: Sequence[int] = (5, 4, 4),
        in_stack_depth: int = 5,
    ) -> None:
        super().__init__()
        if len(stage_blocks) != len(dims):
            raise ValueError(f"stage_blocks {tuple(stage_blocks)} and dims {tuple(dims)} must have the same length.")
        self.stem = MaskedAdaptiveProjection(
            in_channels,
            dims[0],
            kernel_size_2d=tuple(stem_kernel_size[1:]),
            kernel_depth=stem_kernel_size[0],
            in_stack_depth=in_stack_depth,
        )
        rates = np.linspace(0, drop_path_rate, sum(stage_blocks)).tolist()
        self.stages = nn.ModuleList()
        for i, (num_blocks, dim) in enumerate(zip(stage_blocks, dims, strict=True)):
            start = sum(stage_blocks[:i])
            self.stages.append(
                MaskedConvNeXtV2Stage(
                    dims[i - 1] if i > 0 else dim,
                    dim,
                    stride=2 if i > 0 else 1,
                    num_blocks=num_blocks,
                    drop_path_rates=rates[start : start + num_blocks],
                )
            )
        self.total_stride = stem_kernel_size[1] * 2 ** (len(dims) - 1)
        self.apply(init_convnext_weights)

    def forward(
        self, x: Tensor, mask_ratio: float = 0.0, generator: torch.Generator | None = None
    ) -> tuple[list[Tensor], BoolTensor | None]:
        """Encode ``(B, C, D, H, W)``; H and W must be divisible by ``total_stride``.

        Parameters
        ----------
        x : Tensor
            Input stack (``D == 1`` for 2D images).
        mask_ratio : float
            Fraction of ``total_stride``-sized patches to mask; 0 disables masking.
        generator : torch.Generator or None
            Source of randomness for the mask; None uses torch's default generator.

        Returns
        -------
        tuple[list[Tensor], BoolTensor or None]
            Feature maps from high to low resolution, and the ``(B, 1, H / total_stride, W / total_stride)``
            patch mask (True = masked), or None without masking.
        """
        if x.shape[-2] % self.total_stride or x.shape[-1] % self.total_stride:
            raise ValueError(
                f"Input height and width must be divisible by {self.total_stride}, got {tuple(x.shape[-2:])}."
            )
        mask = generate_mask(x.shape, self.total_stride, mask_ratio, x.device, generator) if mask_ratio > 0 else None
        # The stem and each stage upsample the patch-grid mask to their own resolution.
        unmasked = None if mask is None else ~mask
        x = self.stem(x, unmasked)
        features = []
        for stage in self.stages:
            x = stage(x, unmasked)
            features.append(x)
        return features, mask


@register_model("fcmae")
class FullyConvolutionalMAE(nn.Module):
    """ConvNeXt-V2 masked autoencoder with a UNeXt2-style decoder, for 2D and 2.5D inputs.

    Parameters
    ----------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels.
    encoder_blocks : Sequence[int]
        Blocks per encoder stage.
    dims : Sequence[int]
        Channels per encoder stage.
    encoder_drop_path_rate : float
        Stochastic depth rate of the encoder.
    stem_kernel_size : tuple[int, int, int]
        Stem patch size in (Z, Y, X).
    in_stack_depth : int
        Input (and output) Z slices.
    decoder_conv_blocks : int
        ConvNeXt blocks per decoder stage.
    pretraining : bool
        Return ``(prediction, mask)`` instead of the prediction alone; may be switched after construction.
    head_conv : bool
        Use a :class:`~viscy_models.components.PixelToVoxelHead` (with parameters) instead of the parameter-free
        :class:`~viscy_models.components.PixelToVoxelShuffleHead`. Its decoder output width is
        ``(in_stack_depth + 2) * in_channels * 4 * head_conv_expansion_ratio``, sized from ``in_channels`` as in
        the reference implementation so that its checkpoints keep their shapes.
    head_conv_expansion_ratio : int
        Width multiplier of the conv head.
    head_conv_pool : bool
        Smooth the conv head's pixel shuffle with average pooling.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        encoder_blocks: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        encoder_drop_path_rate: float = 0.0,
        stem_kernel_size: Sequence[int] = (5, 4, 4),
        in_stack_depth: int = 5,
        decoder_conv_blocks: int = 1,
        pretraining: bool = True,
        head_conv: bool = False,
        head_conv_expansion_ratio: int = 4,
        head_conv_pool: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = MaskedMultiscaleEncoder(
            in_channels=in_channels,
            stage_blocks=encoder_blocks,
            dims=dims,
            drop_path_rate=encoder_drop_path_rate,
            stem_kernel_size=stem_kernel_size,
            in_stack_depth=in_stack_depth,
        )
        xy_patch = stem_kernel_size[-1]
        decoder_channels = list(reversed(dims))
        if head_conv:
            decoder_channels[-1] = (in_stack_depth + 2) * in_channels * 2**2 * head_conv_expansion_ratio
        else:
            decoder_channels[-1] = out_channels * in_stack_depth * xy_patch**2
        self.decoder = UNeXt2Decoder(
            decoder_channels,
            norm_name="instance",
            mode="pixelshuffle",
            conv_blocks=decoder_conv_blocks,
            strides=(2,) * (len(decoder_channels) - 1),
            upsample_pre_conv=None,
        )
        if head_conv:
            self.head = PixelToVoxelHead(
                decoder_channels[-1], out_channels, in_stack_depth, head_conv_expansion_ratio, pool=head_conv_pool
            )
        else:
            self.head = PixelToVoxelShuffleHead(
                decoder_channels[-1], out_channels, in_stack_depth, xy_scaling=xy_patch, pool=True
            )
        self.out_stack_depth = in_stack_depth
        self.num_blocks = len(dims) * int(math.log2(xy_patch))
        self.pretraining = pretraining

    def forward(
        self, x: Tensor, mask_ratio: float = 0.0, generator: torch.Generator | None = None
    ) -> Tensor | tuple[Tensor, BoolTensor | None]:
        """Reconstruct ``x``, masking ``mask_ratio`` of the 32x32 patches.

        Parameters
        ----------
        x : Tensor
            ``(B, in_channels, D, H, W)`` with ``D`` equal to ``in_stack_depth`` or 1.
        mask_ratio : float
            Fraction of patches to mask; 0 disables masking.
        generator : torch.Generator or None
            Source of randomness for the mask; None uses torch's default generator.

        Returns
        -------
        Tensor or tuple[Tensor, BoolTensor or None]
            ``(B, out_channels, in_stack_depth, H, W)``; while ``pretraining``, also the ``(B, 1, H, W)`` mask
            (True = masked), None when ``mask_ratio`` is 0.
        """
        features, mask = self.encoder(x, mask_ratio, generator)
        y = self.head(self.decoder(features[::-1]))
        if not self.pretraining:
            return y
        return y, None if mask is None else upsample_mask(mask, x.shape)
