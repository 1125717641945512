"""Random unsharp-mask style sharpening of batched volumes, drawn per sample."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from viscy_transforms._mapping import RandomMapTransform
from viscy_transforms._random import TorchRandomizable, apply_to_selected, check_interval, check_probability

__all__ = ["BatchedRandSharpend"]


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


class BatchedRandSharpend(TorchRandomizable, RandomMapTransform):
    """Randomly sharpen each sample of (B, C, Z, Y, X) batches with a weight alpha ~ U(alpha_range).

    Each sample is selected with probability ``prob``; every key of the sample gets the same
    selection and alphas. Works for any number of channels (see :func:`sharpen`).

    Parameters
    ----------
    keys : Hashable | Sequence[Hashable]
        Keys of the batched tensors to sharpen.
    alpha_range : tuple[float, float]
        Range of the blending weight. Default (0.1, 0.5).
    prob : float
        Probability of sharpening one sample. Default 0.1.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable],
        alpha_range: tuple[float, float] = (0.1, 0.5),
        prob: float = 0.1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.alpha_range = check_interval(alpha_range, "alpha_range")
        self.prob = check_probability(prob)
        self._selected = torch.zeros(0, dtype=torch.bool)
        self._alphas = torch.zeros(0, dtype=torch.float64)
        self._init_random_state()

    def randomize(self, data: Tensor) -> None:
        """Draw the selection and the alphas for a batch like ``data``."""
        self._selected = self._bernoulli(data.shape[0], self.prob)
        self._alphas = self._uniform(*self.alpha_range, data.shape[0])

    def apply(self, data: Tensor) -> Tensor:
        """Sharpen the selected samples of one key's (B, C, Z, Y, X) batch."""
        if data.ndim != 5:
            raise ValueError(f"{type(self).__name__} expects (B, C, Z, Y, X) data, got shape {tuple(data.shape)}")
        return apply_to_selected(data, self._selected, lambda sub, index: sharpen(sub, self._alphas[index]))
