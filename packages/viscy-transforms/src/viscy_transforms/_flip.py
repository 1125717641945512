"""Random flips of batched volumes, drawn per sample and per axis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from viscy_transforms._mapping import Keys, SharedDrawMapTransform
from viscy_transforms._random import RandomTransform, check_drawn_batch_size, check_probability
from viscy_transforms.kinds import TransformKind

__all__ = ["BatchedRandFlip", "BatchedRandFlipd", "FlipParams"]


def _check_spatial_axes(spatial_axes: int | Sequence[int]) -> tuple[int, ...]:
    axes = (spatial_axes,) if isinstance(spatial_axes, int) else tuple(spatial_axes)
    if not axes or any(not isinstance(a, int) or a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
        raise ValueError(
            f"spatial_axes must be distinct spatial axis indices among 0 (Z), 1 (Y), 2 (X), got {spatial_axes!r}"
        )
    return axes


@dataclass(frozen=True, eq=False)
class FlipParams:
    """One draw of :class:`BatchedRandFlip`: ``flips[i, j]`` says whether sample i flips along ``spatial_axes[j]``."""

    flips: Tensor


class BatchedRandFlip(RandomTransform[FlipParams]):
    """Flip each sample of a batch along each spatial axis with probability ``prob``.

    Every (sample, axis) pair gets its own Bernoulli(prob) draw.

    Parameters
    ----------
    spatial_axes : int | Sequence[int]
        Spatial axes that may be flipped: 0 is Z, 1 is Y, 2 is X for (B, C, Z, Y, X) input
        (0 is Y and 1 is X for (B, C, Y, X) input).
    prob : float
        Probability of flipping one sample along one axis. Default 0.5.

    Notes
    -----
    When nothing is flipped the input tensor itself is returned; otherwise a new tensor.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = True

    def __init__(self, spatial_axes: int | Sequence[int], prob: float = 0.5) -> None:
        self.spatial_axes = _check_spatial_axes(spatial_axes)
        self.prob = check_probability(prob)
        super().__init__()

    def _check_axes(self, shape: Sequence[int]) -> None:
        if max(self.spatial_axes) >= len(shape) - 2:
            raise ValueError(
                f"spatial_axes {self.spatial_axes} do not fit data of shape {tuple(shape)}, "
                f"which has {len(shape) - 2} spatial dimensions"
            )

    def draw_parameters(self, shape: Sequence[int]) -> FlipParams:
        """Draw the flips, shape (B, len(spatial_axes)), for a (B, C, Z, Y, X) or (B, C, Y, X) batch of ``shape``."""
        self._check_axes(shape)
        flips = self._bernoulli(shape[0] * len(self.spatial_axes), self.prob)
        return FlipParams(flips=flips.reshape(shape[0], len(self.spatial_axes)))

    def apply(self, data: Tensor, params: FlipParams) -> Tensor:
        """Flip the samples of a batch as drawn; ``data`` itself when nothing is flipped."""
        self._check_axes(data.shape)
        check_drawn_batch_size(params.flips.shape[0], data)
        # samples sharing a flip pattern are flipped together: at most 2**len(spatial_axes) batched flips
        codes = params.flips.long() @ (2 ** torch.arange(len(self.spatial_axes)))
        patterns = codes.unique().tolist()
        if patterns == [0]:
            return data
        if len(patterns) == 1:
            return data.flip(self._flipped_dims(patterns[0]))
        out = data.clone()
        for pattern in patterns:
            if pattern == 0:
                continue
            index = (codes == pattern).nonzero().squeeze(1).to(data.device)
            out[index] = data[index].flip(self._flipped_dims(pattern))
        return out

    def _flipped_dims(self, pattern: int) -> list[int]:
        return [axis + 2 for bit, axis in enumerate(self.spatial_axes) if pattern >> bit & 1]


class BatchedRandFlipd(SharedDrawMapTransform):
    """Dictionary version of :class:`BatchedRandFlip`: every key gets the same flips.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the batched tensors to flip.
    spatial_axes : int | Sequence[int]
        Spatial axes that may be flipped (0 Z, 1 Y, 2 X). Default (0, 1, 2).
    prob : float
        Probability of flipping one sample along one axis. Default 0.5.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self,
        keys: Keys,
        spatial_axes: int | Sequence[int] = (0, 1, 2),
        prob: float = 0.5,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BatchedRandFlip(spatial_axes=spatial_axes, prob=prob)
