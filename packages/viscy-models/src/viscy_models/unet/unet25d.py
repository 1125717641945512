"""2.5D U-Net: 3D convolutions that compress a Z stack to fewer output slices."""

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from viscy_models._registry import register_model
from viscy_models.components.conv_block_3d import ConvBlock3D
from viscy_models.unet._levels import encode_decode
from viscy_models.unet._validation import resolve_num_filters, validate_task


@register_model("unet25d")
class Unet25d(nn.Module):
    """2.5D U-Net mapping ``in_stack_depth`` input slices to ``out_stack_depth`` output slices.

    The encoder uses (3, k, k) convolutions with "same" padding and (1, 2, 2) average pooling. The bottom
    transition and the skip connections are ``(1 + in_stack_depth - out_stack_depth, 1, 1)`` convolutions without
    padding, which compress Z; the decoder then works on ``out_stack_depth`` slices with (1, k, k) convolutions.

    Parameters
    ----------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels.
    in_stack_depth : int
        Input Z slices.
    out_stack_depth : int
        Output Z slices, at most ``in_stack_depth``.
    xy_kernel_size : tuple[int, int]
        Odd (Y, X) kernel size of the encoder and decoder blocks.
    residual : bool
        Residual connections in the convolution blocks.
    dropout : float
        Channel dropout probability, in [0, 0.5].
    num_blocks : int
        Downsampling levels; H and W must be divisible by ``2**num_blocks``.
    num_block_layers : int
        Convolution layers per block.
    num_filters : Sequence[int]
        Channels per level plus the bottom (``num_blocks + 1`` entries); empty for ``16 * 2**i``.
    task : {"seg", "reg"}
        ``"seg"``: batch norm, ReLU and dropout in the output block; ``"reg"``: a linear output.

    Raises
    ------
    ValueError
        For an unknown task, dropout outside [0, 0.5], ``out_stack_depth > in_stack_depth``, or a
        ``num_filters`` of the wrong length.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        in_stack_depth: int = 5,
        out_stack_depth: int = 1,
        xy_kernel_size: Sequence[int] = (3, 3),
        residual: bool = False,
        dropout: float = 0.2,
        num_blocks: int = 4,
        num_block_layers: int = 2,
        num_filters: Sequence[int] = (),
        task: Literal["seg", "reg"] = "seg",
    ) -> None:
        super().__init__()
        validate_task(task)
        if not 0.0 <= dropout <= 0.5:
            raise ValueError(f"dropout must be in [0, 0.5], got {dropout}.")
        if not 1 <= out_stack_depth <= in_stack_depth:
            raise ValueError(
                f"out_stack_depth={out_stack_depth} must be between 1 and in_stack_depth={in_stack_depth}."
            )
        filters = resolve_num_filters(num_filters, num_blocks)
        self.num_blocks = num_blocks
        self.in_stack_depth = in_stack_depth
        self.out_stack_depth = out_stack_depth
        self.task = task
        ky, kx = xy_kernel_size
        block_args = {"dropout": dropout, "residual": residual, "num_repeats": num_block_layers}
        for i in range(num_blocks):
            block_in = in_channels if i == 0 else filters[i - 1]
            self.add_module(
                f"down_conv_block_{i}", ConvBlock3D(block_in, filters[i], kernel_size=(3, ky, kx), **block_args)
            )
        z_compression = (1 + in_stack_depth - out_stack_depth, 1, 1)
        self.bottom_transition_block = nn.Conv3d(filters[-2], filters[-1], kernel_size=z_compression)
        for i in range(num_blocks):
            self.add_module(
                f"up_conv_block_{i}",
                ConvBlock3D(
                    filters[-(i + 1)] + filters[-(i + 2)], filters[-(i + 2)], kernel_size=(1, ky, kx), **block_args
                ),
            )
        for i in range(num_blocks):
            self.add_module(f"skip_conv_layer_{i}", nn.Conv3d(filters[i], filters[i], kernel_size=z_compression))
        is_seg = task == "seg"
        self.terminal_block = ConvBlock3D(
            filters[0],
            out_channels,
            dropout=dropout if is_seg else False,
            norm="batch" if is_seg else "none",
            residual=False,
            activation="relu" if is_seg else "linear",
            kernel_size=(1, 3, 3),
            num_repeats=1,
        )
        self.pool = nn.AvgPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.upsample = nn.Upsample(scale_factor=(1, 2, 2), mode="trilinear", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, in_channels, in_stack_depth, H, W)`` to ``(B, out_channels, out_stack_depth, H, W)``."""
        factor = 2**self.num_blocks
        if x.ndim != 5 or x.shape[2] != self.in_stack_depth or x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(
                f"Unet25d expects (B, C, {self.in_stack_depth}, H, W) with H and W divisible by {factor}, "
                f"got {tuple(x.shape)}."
            )
        levels = range(self.num_blocks)
        x = encode_decode(
            x,
            down_blocks=[getattr(self, f"down_conv_block_{i}") for i in levels],
            bottom=self.bottom_transition_block,
            up_blocks=[getattr(self, f"up_conv_block_{i}") for i in levels],
            pool=self.pool,
            upsample=self.upsample,
            skip_convs=[getattr(self, f"skip_conv_layer_{i}") for i in levels],
        )
        return self.terminal_block(x)
