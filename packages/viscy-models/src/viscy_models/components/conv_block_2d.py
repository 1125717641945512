"""Configurable 2D convolution block of the 2D U-Net."""

from collections.abc import Sequence

from viscy_models.components._conv_block import ActivationName, FilterSteps, NormName, _ConvBlock, as_kernel


class ConvBlock2D(_ConvBlock):
    """Repeated 2D convolutions with activation, normalization, dropout and an optional residual connection.

    Each of the ``num_repeats`` layers applies convolution (``c``), activation (``a``) and normalization (``n``) in
    ``layer_order``, followed by dropout. Convolutions use "same" padding.

    Parameters
    ----------
    in_filters : int
        Input channels.
    out_filters : int
        Output channels.
    dropout : float or bool
        Channel dropout probability after each layer (``nn.Dropout2d``); False or 0 disables it.
    norm : {"batch", "instance", "none"}
        Normalization; instance norm is not affine.
    residual : bool
        Add the input to the output (1x1 conv when channels shrink, zero channels prepended when they grow).
    activation : {"relu", "leakyrelu", "elu", "selu", "linear"}
        Activation after each convolution.
    transpose : bool
        Use transposed convolutions.
    kernel_size : int or tuple[int, int]
        Odd kernel size.
    num_repeats : int
        Number of conv/activation/norm layers.
    filter_steps : {"first", "linear", "last"}
        Where the channel count changes: in the first conv, linearly across convs, or in the last conv.
    layer_order : str
        Permutation of ``"can"``.

    Raises
    ------
    ValueError
        For an unknown norm, activation, filter_steps or layer_order, an even kernel, or dropout outside [0, 1).
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
        kernel_size: int | Sequence[int] = 3,
        num_repeats: int = 3,
        filter_steps: FilterSteps = "first",
        layer_order: str = "can",
    ) -> None:
        kernel = as_kernel(kernel_size, 2)
        super().__init__(
            spatial_dims=2,
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
            padding=tuple(k // 2 for k in kernel),
        )
