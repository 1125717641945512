"""Configurable 3D convolution block of the 2.5D U-Net."""

from collections.abc import Sequence
from typing import Literal

from viscy_models.components._conv_block import ActivationName, FilterSteps, NormName, _ConvBlock, as_kernel

PADDING_MODES: tuple[str, ...] = ("same", "valid_stack")


def _padding(kernel: tuple[int, ...], padding: int | Sequence[int] | str | None) -> tuple[int, ...]:
    if padding is None or padding == "same":
        return tuple(k // 2 for k in kernel)
    if padding == "valid_stack":
        return (0, *(k // 2 for k in kernel[1:]))
    if isinstance(padding, str):
        raise ValueError(f"Unknown padding {padding!r}; choose one of {PADDING_MODES}, None, or integers.")
    pad = (padding,) * 3 if isinstance(padding, int) else tuple(padding)
    if len(pad) != 3 or any(p < 0 for p in pad):
        raise ValueError(f"padding must be 3 non-negative integers (Z, Y, X), got {padding!r}.")
    return pad


class ConvBlock3D(_ConvBlock):
    """Repeated 3D convolutions with activation, normalization, dropout and an optional residual connection.

    Each of the ``num_repeats`` layers applies convolution (``c``), activation (``a``) and normalization (``n``) in
    ``layer_order``, followed by dropout.

    Parameters
    ----------
    in_filters : int
        Input channels.
    out_filters : int
        Output channels.
    dropout : float or bool
        Channel dropout probability after each layer (``nn.Dropout3d``); False or 0 disables it.
    norm : {"batch", "instance", "none"}
        Normalization; instance norm is not affine.
    residual : bool
        Add the input to the output (1x1x1 conv when channels shrink, zero channels prepended when they grow; the
        input is centre-cropped when ``padding`` shrinks the output).
    activation : {"relu", "leakyrelu", "elu", "selu", "linear"}
        Activation after each convolution.
    transpose : bool
        Use transposed convolutions.
    kernel_size : int or tuple[int, int, int]
        Odd kernel size in (Z, Y, X).
    num_repeats : int
        Number of conv/activation/norm layers.
    filter_steps : {"first", "linear", "last"}
        Where the channel count changes: in the first conv, linearly across convs, or in the last conv.
    layer_order : str
        Permutation of ``"can"``.
    padding : None, "same", "valid_stack", int or tuple[int, int, int]
        None or ``"same"``: keep the size (``kernel // 2`` zeros per side). ``"valid_stack"``: no padding in Z (each
        convolution shrinks the stack by ``kernel_z - 1``), "same" in XY. Integers: explicit zero padding.

    Raises
    ------
    ValueError
        For an unknown norm, activation, filter_steps, layer_order or padding, an even kernel, or dropout outside
        [0, 1).
    """

    def __init__(
        self,
        in_filters: int,
        out_filters: int,
        dropout: float | bool = False,
        norm: NormName = "batch",
        residual: bool = True,
        activation: ActivationName = "relu",
        transpose: bool = False,
        kernel_size: int | Sequence[int] = (3, 3, 3),
        num_repeats: int = 3,
        filter_steps: FilterSteps = "first",
        layer_order: str = "can",
        padding: Literal["same", "valid_stack"] | int | Sequence[int] | None = None,
    ) -> None:
        kernel = as_kernel(kernel_size, 3)
        super().__init__(
            spatial_dims=3,
            in_filters=in_filters,
            out_filters=out_filters,
            dropout=dropout,
            norm=norm,
            residual=residual,
            activation=activation,
            transpose=transpose,
            kernel_size=kernel,
            num_repeats=num_repeats,
            filter_steps=filter_steps,
            layer_order=layer_order,
            padding=_padding(kernel, padding),
        )
