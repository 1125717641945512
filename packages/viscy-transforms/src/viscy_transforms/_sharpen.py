"""Random unsharp-mask style sharpening of batched volumes, drawn per sample."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from viscy_transforms._mapping import Keys, SharedDrawMapTransform
from viscy_transforms._random import (
    RandomTransform,
    apply_to_selected,
    check_batch_shape,
    check_interval,
    check_probability,
)
from viscy_transforms.kinds import TransformKind

__all__ = ["BatchedRandSharpen", "BatchedRandSharpend", "SharpenParams", "sharpen"]


def sharpen(data: Tensor, alpha: Tensor) -> Tensor:
    """Blend each sample with its 3D Laplacian-sharpened version: ``(1 - a) * x + a * (K * x)``.

    ``K`` is the 3x3x3 kernel with 7 at the centre and -1 on the 6 face neighbours (it sums to 1),
    applied depthwise (every channel on its own) with zero padding.

    Parameters
    ----------
    data : Tensor
        Shape (N, C, Z, Y, X), any C.
    alpha : Tensor
        Shape (N,), the blending weight of each sample.

    Returns
    -------
    Tensor
        The sharpened batch.
    """
    channels = data.shape[1]
    kernel = torch.zeros((3, 3, 3), dtype=data.dtype, device=data.device)
    kernel[1, 1, 1] = 7.0
    for axis in range(3):
        for side in (0, 2):
            position = [1, 1, 1]
            position[axis] = side
            kernel[tuple(position)] = -1.0
    weight = kernel.expand(channels, 1, 3, 3, 3)
    filtered = F.conv3d(data, weight, padding=1, groups=channels)
    alpha = alpha.to(device=data.device, dtype=data.dtype).reshape(-1, 1, 1, 1, 1)
    return (1 - alpha) * data + alpha * filtered


@dataclass(frozen=True, eq=False)
class SharpenParams:
    """One draw of :class:`BatchedRandSharpen`: which samples change (B,) and their blending weights (B,)."""

    selected: Tensor
    alphas: Tensor


class BatchedRandSharpen(RandomTransform[SharpenParams]):
    """Array version of :class:`BatchedRandSharpend`: sharpen each sample of a (B, C, Z, Y, X) batch by :func:`sharpen`.

    Each sample is selected with probability ``prob`` and blended with weight alpha ~ U(alpha_range).

    Parameters
    ----------
    alpha_range, prob
        As in :class:`BatchedRandSharpend`.
    """

    def __init__(self, alpha_range: tuple[float, float] = (0.1, 0.5), prob: float = 0.1) -> None:
        self.alpha_range = check_interval(alpha_range, "alpha_range")
        self.prob = check_probability(prob)
        super().__init__()

    def draw_parameters(self, shape: Sequence[int]) -> SharpenParams:
        """Draw the selection and the alphas for a (B, C, Z, Y, X) batch of ``shape``."""
        check_batch_shape(shape, self)
        return SharpenParams(
            selected=self._bernoulli(shape[0], self.prob), alphas=self._uniform(*self.alpha_range, shape[0])
        )

    def apply(self, data: Tensor, params: SharpenParams) -> Tensor:
        """Sharpen the selected samples of a (B, C, Z, Y, X) batch; ``data`` itself when none is selected."""
        check_batch_shape(data.shape, self)
        return apply_to_selected(data, params.selected, lambda sub, index: sharpen(sub, params.alphas[index]))


class BatchedRandSharpend(SharedDrawMapTransform):
    """Randomly sharpen each sample of (B, C, Z, Y, X) batches with a weight alpha ~ U(alpha_range).

    Each sample is selected with probability ``prob``; every key of the sample gets the same
    selection and alphas. Works for any number of channels (see :func:`sharpen`).

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the batched tensors to sharpen.
    alpha_range : tuple[float, float]
        Range of the blending weight. Default (0.1, 0.5).
    prob : float
        Probability of sharpening one sample. Default 0.1.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.INTENSITY
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self,
        keys: Keys,
        alpha_range: tuple[float, float] = (0.1, 0.5),
        prob: float = 0.1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BatchedRandSharpen(alpha_range=alpha_range, prob=prob)
