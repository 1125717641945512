"""Dimension-agnostic implementation behind ConvBlock2D and ConvBlock3D."""

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

NormName = Literal["batch", "instance", "none"]
ActivationName = Literal["relu", "leakyrelu", "elu", "selu", "linear"]
FilterSteps = Literal["first", "linear", "last"]

NORMS: tuple[str, ...] = ("batch", "instance", "none")
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leakyrelu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "linear": nn.Identity,
}
FILTER_STEPS: tuple[str, ...] = ("first", "linear", "last")

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_TRANSPOSE = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCE_NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_DROPOUT = {2: nn.Dropout2d, 3: nn.Dropout3d}


def _channel_steps(in_filters: int, out_filters: int, num_repeats: int, filter_steps: str) -> list[int]:
    """Channels before and after each of the ``num_repeats`` convolutions."""
    if filter_steps == "first":
        return [in_filters] + [out_filters] * num_repeats
    if filter_steps == "last":
        return [in_filters] * num_repeats + [out_filters]
    return [int(c) for c in np.linspace(in_filters, out_filters, num_repeats + 1)]


def as_kernel(kernel_size: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    """Expand an int kernel size to ``spatial_dims`` dimensions."""
    return (kernel_size,) * spatial_dims if isinstance(kernel_size, int) else tuple(kernel_size)


def _validate_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; choose one of {tuple(choices)}.")


class _ConvBlock(nn.Module):
    """``num_repeats`` x (conv, activation, norm in ``layer_order``), optional dropout, optional residual.

    Submodules are registered as ``{norm}_norm_{i}``, ``Conv{d}d_{i}``, ``{activation}_act_{i}``, ``dropout_{i}``
    and ``resid_conv``: these names are the state_dict keys of trained checkpoints and must not change.
    ``resid_conv`` (a 1x1 convolution from ``in_filters`` to ``out_filters``) is always registered, even when the
    block has no residual or never uses it (``in_filters <= out_filters``), because every checkpoint of the
    reference implementation contains it and must keep loading with ``strict=True``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_filters: int,
        out_filters: int,
        dropout: float | bool,
        norm: NormName,
        residual: bool,
        activation: ActivationName,
        transpose: bool,
        kernel_size: int | Sequence[int],
        num_repeats: int,
        filter_steps: FilterSteps,
        layer_order: str,
        padding: Sequence[int],
    ) -> None:
        super().__init__()
        _validate_choice("norm", norm, NORMS)
        _validate_choice("activation", activation, tuple(ACTIVATIONS))
        _validate_choice("filter_steps", filter_steps, FILTER_STEPS)
        if sorted(layer_order) != ["a", "c", "n"]:
            raise ValueError(
                f"layer_order must be a permutation of 'can' (c: conv, a: activation, n: norm), got {layer_order!r}."
            )
        kernel = as_kernel(kernel_size, spatial_dims)
        if len(kernel) != spatial_dims or any(k % 2 == 0 for k in kernel):
            raise ValueError(f"kernel_size must be {spatial_dims} odd integers, got {kernel_size!r}.")
        if num_repeats < 1:
            raise ValueError(f"num_repeats must be at least 1, got {num_repeats}.")
        dropout_p = float(dropout)
        if not 0.0 <= dropout_p < 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}.")

        self.spatial_dims = spatial_dims
        self.in_filters = in_filters
        self.out_filters = out_filters
        self.residual = residual
        self.num_repeats = num_repeats
        self.layer_order = layer_order
        self.norm = norm
        self.activation = activation
        self.dropout = dropout_p

        channels = _channel_steps(in_filters, out_filters, num_repeats, filter_steps)
        norm_after_conv = layer_order.index("n") > layer_order.index("c")
        if norm != "none":
            norm_layer = _BATCH_NORM[spatial_dims] if norm == "batch" else _INSTANCE_NORM[spatial_dims]
            for i in range(num_repeats):
                self.add_module(f"{norm}_norm_{i}", norm_layer(channels[i + 1] if norm_after_conv else channels[i]))
        conv_layer = _CONV_TRANSPOSE[spatial_dims] if transpose else _CONV[spatial_dims]
        for i in range(num_repeats):
            self.add_module(
                f"Conv{spatial_dims}d_{i}",
                conv_layer(channels[i], channels[i + 1], kernel_size=kernel, padding=tuple(padding)),
            )
        for i in range(num_repeats):
            self.add_module(f"{activation}_act_{i}", ACTIVATIONS[activation]())
        if dropout_p > 0:
            for i in range(num_repeats):
                self.add_module(f"dropout_{i}", _DROPOUT[spatial_dims](dropout_p))
        self.resid_conv = _CONV[spatial_dims](in_filters, out_filters, kernel_size=1)

    def _layer(self, kind: str, i: int) -> nn.Module | None:
        if kind == "c":
            return getattr(self, f"Conv{self.spatial_dims}d_{i}")
        if kind == "a":
            return getattr(self, f"{self.activation}_act_{i}")
        return getattr(self, f"{self.norm}_norm_{i}", None)

    def _shortcut(self, x: Tensor, out_shape: torch.Size) -> Tensor:
        """Match the block input to the output: 1x1 conv, or zero channels prepended; centre-cropped spatially."""
        if self.in_filters > self.out_filters:
            x = self.resid_conv(x)
        elif self.in_filters < self.out_filters:
            x = F.pad(x, (0, 0) * self.spatial_dims + (self.out_filters - self.in_filters, 0))
        crops = [(size - target) // 2 for size, target in zip(x.shape[2:], out_shape[2:], strict=True)]
        slices = [slice(c, c + t) for c, t in zip(crops, out_shape[2:], strict=True)]
        return x[(slice(None), slice(None), *slices)]

    def forward(self, x: Tensor) -> Tensor:
        """Apply the repeated layers, then add the shortcut when ``residual`` is set."""
        block_input = x
        for i in range(self.num_repeats):
            for kind in self.layer_order:
                layer = self._layer(kind, i)
                if layer is not None:
                    x = layer(x)
            if self.dropout > 0:
                x = getattr(self, f"dropout_{i}")(x)
        if self.residual:
            x = x + self._shortcut(block_input, x.shape)
        return x
