"""UNeXt2: 2.5D virtual staining network with a timm ConvNeXt encoder."""

from collections.abc import Sequence
from typing import Literal

import timm
from torch import Tensor, nn

from viscy_models._backbones import timm_backbone_family
from viscy_models._registry import register_model
from viscy_models.components.blocks import UNeXt2Decoder, UpsampleMode
from viscy_models.components.heads import PixelToVoxelHead
from viscy_models.components.stems import UNeXt2Stem


@register_model("unext2")
class UNeXt2(nn.Module):
    """2.5D U-Net with a ConvNeXt encoder, a ConvNeXt-V2 decoder and a 3D pixel-shuffle head.

    The stem folds the input stack into channels at 1/4 XY resolution, the timm encoder (its own 4x4 patchify conv
    replaced by the stem) produces features at 1/4 to 1/32, three decoder stages bring them back to 1/4, and
    :class:`~viscy_models.components.PixelToVoxelHead` outputs ``out_stack_depth`` slices at full resolution.

    Parameters
    ----------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels.
    in_stack_depth : int
        Input Z slices; must be divisible by ``stem_kernel_size[0]``.
    out_stack_depth : int or None
        Output Z slices; None for ``in_stack_depth``.
    backbone : str
        timm ConvNeXt model name (e.g. ``"convnextv2_tiny"``, ``"convnextv2_atto"``, ``"convnext_tiny"``).
    pretrained : bool
        Load timm's pretrained encoder weights (downloads from the Hugging Face hub).
    stem_kernel_size : tuple[int, int, int]
        Stem kernel and stride in (Z, Y, X).
    decoder_mode : {"pixelshuffle", "deconv"}
        Decoder upsampling.
    decoder_conv_blocks : int
        ConvNeXt blocks per decoder stage.
    decoder_norm_layer : str
        MONAI norm used by the ``"deconv"`` decoder.
    decoder_upsample_pre_conv : bool
        Add a 3x3 convolution before each decoder pixel shuffle.
    head_pool : bool
        Smooth the head's pixel shuffle with average pooling.
    head_expansion_ratio : int
        Width multiplier of the head's 3D convolution.
    drop_path_rate : float
        Stochastic depth rate of the encoder.

    Raises
    ------
    ValueError
        If ``in_stack_depth`` is not divisible by ``stem_kernel_size[0]``, or ``backbone`` is not a timm ConvNeXt.

    Notes
    -----
    Input height and width must be divisible by 32. Input ``(B, in_channels, in_stack_depth, H, W)`` gives
    output ``(B, out_channels, out_stack_depth, H, W)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        in_stack_depth: int = 5,
        out_stack_depth: int | None = None,
        backbone: str = "convnextv2_tiny",
        pretrained: bool = False,
        stem_kernel_size: Sequence[int] = (5, 4, 4),
        decoder_mode: UpsampleMode = "pixelshuffle",
        decoder_conv_blocks: int = 2,
        decoder_norm_layer: str = "instance",
        decoder_upsample_pre_conv: bool = False,
        head_pool: bool = False,
        head_expansion_ratio: int = 4,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if in_stack_depth % stem_kernel_size[0] != 0:
            raise ValueError(
                f"Input stack depth {in_stack_depth} is not divisible by stem kernel depth {stem_kernel_size[0]}."
            )
        timm_backbone_family(backbone, ("convnext",), "UNeXt2")
        self.in_stack_depth = in_stack_depth
        self.out_stack_depth = in_stack_depth if out_stack_depth is None else out_stack_depth
        multi_scale_encoder = timm.create_model(
            backbone, pretrained=pretrained, features_only=True, drop_path_rate=drop_path_rate
        )
        num_channels = multi_scale_encoder.feature_info.channels()
        # The stem below replaces the encoder's own 2D patchify conv; its LayerNorm (stem_1) stays.
        multi_scale_encoder.stem_0 = nn.Identity()
        self.encoder_stages = multi_scale_encoder
        self.stem = UNeXt2Stem(in_channels, num_channels[0], tuple(stem_kernel_size), in_stack_depth)
        decoder_channels = list(reversed(num_channels))
        decoder_channels[-1] = (self.out_stack_depth + 2) * out_channels * 2**2 * head_expansion_ratio
        self.decoder = UNeXt2Decoder(
            decoder_channels,
            norm_name=decoder_norm_layer,
            mode=decoder_mode,
            conv_blocks=decoder_conv_blocks,
            strides=(2,) * (len(decoder_channels) - 1),
            upsample_pre_conv="default" if decoder_upsample_pre_conv else None,
        )
        self.head = PixelToVoxelHead(
            decoder_channels[-1], out_channels, self.out_stack_depth, head_expansion_ratio, pool=head_pool
        )

    @property
    def num_blocks(self) -> Literal[6]:
        """Number of resolution levels the architecture reports to training code (a constant, 6)."""
        return 6

    def forward(self, x: Tensor) -> Tensor:
        """Predict ``(B, out_channels, out_stack_depth, H, W)`` from ``(B, in_channels, in_stack_depth, H, W)``."""
        if x.shape[2] != self.in_stack_depth or x.shape[-2] % 32 or x.shape[-1] % 32:
            raise ValueError(
                f"UNeXt2 expects input (B, C, {self.in_stack_depth}, H, W) with H and W divisible by 32, "
                f"got {tuple(x.shape)}."
            )
        x = self.stem(x)
        features = self.encoder_stages(x)
        return self.head(self.decoder(features[::-1]))
