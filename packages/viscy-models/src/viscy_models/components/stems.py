"""Stems that fold a thin z-stack into the channels of a 2D feature map."""

from collections.abc import Sequence

from torch import Tensor, nn


def fold_depth_into_channels(x: Tensor) -> Tensor:
    """Reshape ``(B, C, D, H, W)`` to ``(B, C*D, H, W)``, channel-major (channel outer, depth inner)."""
    b, c, d, h, w = x.shape
    return x.reshape(b, c * d, h, w)


class UNeXt2Stem(nn.Module):
    """3D patchify convolution whose output depth is folded into channels.

    The kernel equals the stride, so the stack of ``in_stack_depth`` slices becomes
    ``in_stack_depth // kernel_size[0]`` depth positions of ``out_channels // (in_stack_depth // kernel_size[0])``
    channels each, which are then stacked into ``out_channels`` 2D channels.

    Parameters
    ----------
    in_channels : int
        Number of input channels.
    out_channels : int
        Number of 2D channels after folding the depth into channels.
    kernel_size : tuple[int, int, int]
        Kernel (and stride) in (Z, Y, X).
    in_stack_depth : int
        Number of input Z slices.

    Raises
    ------
    ValueError
        If the depth is not divisible by the Z kernel, or ``out_channels`` is not divisible by the output depth.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Sequence[int], in_stack_depth: int) -> None:
        super().__init__()
        kernel_size = tuple(kernel_size)
        if in_stack_depth % kernel_size[0] != 0:
            raise ValueError(
                f"in_stack_depth={in_stack_depth} is not divisible by the stem's Z kernel size {kernel_size[0]}."
            )
        out_depth = in_stack_depth // kernel_size[0]
        if out_channels % out_depth != 0:
            raise ValueError(
                f"out_channels={out_channels} is not divisible by the stem's output depth {out_depth} "
                f"(in_stack_depth={in_stack_depth} // kernel_size[0]={kernel_size[0]})."
            )
        self.conv = nn.Conv3d(in_channels, out_channels // out_depth, kernel_size=kernel_size, stride=kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, C, D, H, W)`` to ``(B, out_channels, H / kh, W / kw)``."""
        return fold_depth_into_channels(self.conv(x))


class StemDepthtoChannels(nn.Module):
    """3D convolution stem with a free stride, whose output depth is folded into channels.

    Parameters
    ----------
    in_channels : int
        Number of input channels.
    in_stack_depth : int
        Number of input Z slices.
    in_channels_encoder : int
        Number of 2D channels the encoder expects; must equal output depth times the conv's channels.
    stem_kernel_size : tuple[int, int, int]
        Convolution kernel in (Z, Y, X).
    stem_stride : tuple[int, int, int]
        Convolution stride in (Z, Y, X).

    Raises
    ------
    ValueError
        If ``in_channels_encoder`` is not divisible by the stem's output depth.
    """

    def __init__(
        self,
        in_channels: int,
        in_stack_depth: int,
        in_channels_encoder: int,
        stem_kernel_size: Sequence[int] = (5, 4, 4),
        stem_stride: Sequence[int] = (5, 4, 4),
    ) -> None:
        super().__init__()
        stem_kernel_size = tuple(stem_kernel_size)
        stem_stride = tuple(stem_stride)
        if in_stack_depth < stem_kernel_size[0]:
            raise ValueError(
                f"in_stack_depth={in_stack_depth} is smaller than the stem's Z kernel size {stem_kernel_size[0]}."
            )
        out_depth = (in_stack_depth - stem_kernel_size[0]) // stem_stride[0] + 1
        out_channels = in_channels_encoder // out_depth
        if out_channels * out_depth != in_channels_encoder:
            missing = in_channels_encoder - out_channels * out_depth
            raise ValueError(
                f"Stem needs to output {missing} more channels to match the encoder: {in_channels_encoder} "
                f"encoder channels are not divisible by the stem's output depth {out_depth} "
                f"(in_stack_depth={in_stack_depth}, stem_kernel_size={stem_kernel_size}, stem_stride={stem_stride})."
            )
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=stem_kernel_size, stride=stem_stride)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, C, D, H, W)`` to ``(B, in_channels_encoder, H', W')``."""
        return fold_depth_into_channels(self.conv(x))
