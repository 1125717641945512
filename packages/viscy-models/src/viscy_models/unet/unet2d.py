"""2D U-Net with average-pool downsampling and bilinear upsampling."""

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from viscy_models._registry import register_model
from viscy_models.components.conv_block_2d import ConvBlock2D
from viscy_models.unet._levels import encode_decode
from viscy_models.unet._validation import resolve_num_filters, validate_task


@register_model("unet2d")
class Unet2d(nn.Module):
    """2D U-Net for ``(B, C, 1, H, W)`` inputs.

    Parameters
    ----------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels.
    kernel_size : tuple[int, int]
        Odd convolution kernel size.
    residual : bool
        Residual connections in the convolution blocks.
    dropout : float
        Channel dropout probability after every convolution layer of the encoder, bottom and decoder blocks.
    num_blocks : int
        Downsampling levels; H and W must be divisible by ``2**num_blocks``.
    num_block_layers : int
        Convolution layers per block.
    num_filters : Sequence[int]
        Channels per level plus the bottom (``num_blocks + 1`` entries); empty for ``16 * 2**i``.
    task : {"seg", "reg"}
        ``"seg"`` ends with a ReLU, ``"reg"`` with a linear output.

    Raises
    ------
    ValueError
        For an unknown task, a ``num_filters`` of the wrong length, or an invalid dropout or kernel size.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        kernel_size: Sequence[int] = (3, 3),
        residual: bool = False,
        dropout: float = 0.2,
        num_blocks: int = 4,
        num_block_layers: int = 2,
        num_filters: Sequence[int] = (),
        task: Literal["seg", "reg"] = "seg",
    ) -> None:
        super().__init__()
        validate_task(task)
        filters = resolve_num_filters(num_filters, num_blocks)
        self.num_blocks = num_blocks
        self.task = task
        block_args = {
            "dropout": dropout,
            "residual": residual,
            "kernel_size": tuple(kernel_size),
            "num_repeats": num_block_layers,
        }
        for i in range(num_blocks):
            block_in = in_channels if i == 0 else filters[i - 1]
            self.add_module(f"down_conv_block_{i}", ConvBlock2D(block_in, filters[i], **block_args))
        self.bottom_transition_block = ConvBlock2D(filters[-2], filters[-1], **block_args)
        for i in range(num_blocks):
            self.add_module(
                f"up_conv_block_{i}",
                ConvBlock2D(filters[-(i + 1)] + filters[-(i + 2)], filters[-(i + 2)], **block_args),
            )
        self.terminal_block = ConvBlock2D(
            filters[0],
            out_channels,
            norm="none",
            residual=False,
            activation="relu" if task == "seg" else "linear",
            kernel_size=tuple(kernel_size),
            num_repeats=1,
        )
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, in_channels, 1, H, W)`` to ``(B, out_channels, 1, H, W)``."""
        factor = 2**self.num_blocks
        if x.ndim != 5 or x.shape[2] != 1 or x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(
                f"Unet2d expects (B, C, 1, H, W) with H and W divisible by {factor}, got {tuple(x.shape)}."
            )
        levels = range(self.num_blocks)
        x = encode_decode(
            x[:, :, 0],
            down_blocks=[getattr(self, f"down_conv_block_{i}") for i in levels],
            bottom=self.bottom_transition_block,
            up_blocks=[getattr(self, f"up_conv_block_{i}") for i in levels],
            pool=self.pool,
            upsample=self.upsample,
        )
        return self.terminal_block(x).unsqueeze(2)
