"""Decoder blocks shared by UNeXt2 and FCMAE."""

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from monai.networks.blocks import ResidualUnit, UpSample
from timm.layers import LayerNorm2d
from timm.models.convnext import ConvNeXtStage
from torch import Tensor, nn

from viscy_models.components.init import icnr_init, init_convnext_weights

UpsampleMode = Literal["deconv", "pixelshuffle"]
UPSAMPLE_MODES: tuple[str, ...] = ("deconv", "pixelshuffle")


def convnext_decoder_stage(
    in_channels: int, out_channels: int, conv_blocks: int, icnr_upsample_factor: int | None = None
) -> ConvNeXtStage:
    """Build a stride-1 ConvNeXt-V2 stage (1x1 conv MLP with GRN, no layer scale) for a decoder.

    Parameters
    ----------
    in_channels : int
        Input channels; a LayerNorm2d + 1x1 conv projects them when they differ from ``out_channels``.
    out_channels : int
        Output channels.
    conv_blocks : int
        Number of ConvNeXt blocks.
    icnr_upsample_factor : int or None
        When given, the last block's ``mlp.fc2`` gets ICNR initialization for a following 2D pixel shuffle of
        this factor.

    Returns
    -------
    ConvNeXtStage
        The stage, initialized with :func:`~viscy_models.components.init_convnext_weights`.
    """
    stage = ConvNeXtStage(
        in_chs=in_channels,
        out_chs=out_channels,
        stride=1,
        depth=conv_blocks,
        ls_init_value=None,
        conv_mlp=True,
        use_grn=True,
        norm_layer=LayerNorm2d,
    )
    stage.apply(init_convnext_weights)
    if icnr_upsample_factor is not None:
        icnr_init(stage.blocks[-1].mlp.fc2, icnr_upsample_factor, upsample_dims=2)
    return stage


def xy_upsampler(
    in_channels: int,
    out_channels: int,
    scale_factor: int,
    mode: UpsampleMode,
    pre_conv: Literal["default"] | Callable | None,
) -> tuple[UpSample, int]:
    """Build the XY upsampling layer of a decoder stage.

    Parameters
    ----------
    in_channels : int
        Channels of the input.
    out_channels : int
        Channels of the transposed convolution in ``"deconv"`` mode.
    scale_factor : int
        XY upsampling factor.
    mode : {"pixelshuffle", "deconv"}
        ``"pixelshuffle"``: a sub-pixel upsample to ``in_channels // scale_factor**2`` channels. ``"deconv"``: a
        transposed convolution to ``out_channels``.
    pre_conv : "default", nn.Module or None
        Convolution before the pixel shuffle (MONAI ``UpSample(pre_conv=...)``); None for none.

    Returns
    -------
    tuple[UpSample, int]
        The MONAI ``UpSample`` layer and the number of channels it outputs.

    Raises
    ------
    ValueError
        If ``mode`` is unknown.
    """
    if mode == "pixelshuffle":
        upsampled_channels = in_channels // scale_factor**2
        layer = UpSample(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=upsampled_channels,
            scale_factor=scale_factor,
            mode="pixelshuffle",
            pre_conv=pre_conv,
            apply_pad_pool=False,
        )
        return layer, upsampled_channels
    if mode == "deconv":
        layer = UpSample(
            spatial_dims=2, in_channels=in_channels, out_channels=out_channels, scale_factor=scale_factor, mode="deconv"
        )
        return layer, out_channels
    raise ValueError(f"Unknown upsampling mode {mode!r}; choose one of {UPSAMPLE_MODES}.")


class UNeXt2UpStage(nn.Module):
    """One decoder stage: upsample, concatenate the encoder skip connection, convolve.

    Parameters
    ----------
    in_channels : int
        Channels of the lower-resolution input.
    skip_channels : int
        Channels of the skip connection.
    out_channels : int
        Output channels.
    scale_factor : int
        XY upsampling factor.
    mode : {"pixelshuffle", "deconv"}
        ``"pixelshuffle"``: a sub-pixel upsample to ``in_channels / scale_factor**2`` channels followed by a
        ConvNeXt-V2 stage. ``"deconv"``: a transposed convolution to ``out_channels`` followed by a MONAI residual
        unit on ``out_channels + skip_channels`` and a 1x1 convolution to ``out_channels``.
    conv_blocks : int
        ConvNeXt blocks in ``"pixelshuffle"`` mode.
    norm_name : str
        MONAI norm of the residual unit in ``"deconv"`` mode.
    upsample_pre_conv : "default", nn.Module or None
        Convolution before the pixel shuffle (MONAI ``UpSample(pre_conv=...)``); None for none.

    Raises
    ------
    ValueError
        If ``mode`` is unknown, or ``in_channels`` is not divisible by ``scale_factor**2`` in pixel shuffle mode.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        scale_factor: int,
        mode: UpsampleMode,
        conv_blocks: int,
        norm_name: str,
        upsample_pre_conv: Literal["default"] | Callable | None,
    ) -> None:
        super().__init__()
        if mode == "pixelshuffle" and in_channels % scale_factor**2 != 0:
            raise ValueError(
                f"in_channels={in_channels} must be divisible by scale_factor**2={scale_factor**2} "
                "for pixel shuffle upsampling."
            )
        self.upsample, upsampled_channels = xy_upsampler(
            in_channels, out_channels, scale_factor, mode, pre_conv=upsample_pre_conv
        )
        merged_channels = upsampled_channels + skip_channels
        if mode == "pixelshuffle":
            self.conv = convnext_decoder_stage(
                merged_channels,
                out_channels,
                conv_blocks,
                icnr_upsample_factor=scale_factor if upsample_pre_conv is None else None,
            )
        else:
            self.conv = nn.Sequential(
                ResidualUnit(spatial_dims=2, in_channels=merged_channels, out_channels=merged_channels, norm=norm_name),
                nn.Conv2d(merged_channels, out_channels, kernel_size=1),
            )

    def forward(self, inp: Tensor, skip: Tensor) -> Tensor:
        """Upsample ``inp``, concatenate ``skip`` on channels, convolve."""
        return self.conv(torch.cat([self.upsample(inp), skip], dim=1))


class UNeXt2Decoder(nn.Module):
    """Stack of :class:`UNeXt2UpStage` consuming encoder features from low to high resolution.

    Stage ``i`` takes ``num_channels[i]`` input channels, a skip connection of ``num_channels[i] // 2`` channels,
    and outputs ``num_channels[i + 1]`` channels, upsampling by ``strides[i]``.

    Parameters
    ----------
    num_channels : Sequence[int]
        Channels from the deepest feature to the decoder output.
    norm_name : str
        MONAI norm for ``"deconv"`` mode.
    mode : {"pixelshuffle", "deconv"}
        Upsampling mode.
    conv_blocks : int
        ConvNeXt blocks per stage.
    strides : Sequence[int]
        Upsampling factor of each stage; entries past ``len(num_channels) - 1`` are unused.
    upsample_pre_conv : "default", nn.Module or None
        Convolution before each pixel shuffle.

    Raises
    ------
    ValueError
        If there are fewer strides than stages.
    """

    def __init__(
        self,
        num_channels: Sequence[int],
        norm_name: str,
        mode: UpsampleMode,
        conv_blocks: int,
        strides: Sequence[int],
        upsample_pre_conv: Literal["default"] | Callable | None,
    ) -> None:
        super().__init__()
        num_stages = len(num_channels) - 1
        if len(strides) < num_stages:
            raise ValueError(f"Need {num_stages} strides for {num_stages} decoder stages, got strides={strides}.")
        self.decoder_stages = nn.ModuleList(
            UNeXt2UpStage(
                in_channels=num_channels[i],
                skip_channels=num_channels[i] // 2,
                out_channels=num_channels[i + 1],
                scale_factor=strides[i],
                mode=mode,
                conv_blocks=conv_blocks,
                norm_name=norm_name,
                upsample_pre_conv=upsample_pre_conv,
            )
            for i in range(num_stages)
        )

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Decode features ordered from lowest to highest resolution; the sequence is not modified.

        Parameters
        ----------
        features : Sequence[Tensor]
            ``len(decoder_stages) + 1`` feature maps: the deepest one first, then one skip connection per stage.

        Returns
        -------
        Tensor
            Output of the last stage.
        """
        if len(features) != len(self.decoder_stages) + 1:
            raise ValueError(
                f"The decoder has {len(self.decoder_stages)} stages and needs {len(self.decoder_stages) + 1} "
                f"feature maps (deepest first), got {len(features)}."
            )
        x = features[0]
        for stage, skip in zip(self.decoder_stages, features[1:], strict=True):
            x = stage(x, skip)
        return x
