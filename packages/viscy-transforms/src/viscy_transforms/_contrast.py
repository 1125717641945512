"""Random gamma contrast adjustment, drawn per sample."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from numbers import Real

import torch
from monai.transforms import Transform
from torch import Tensor

from viscy_transforms._mapping import SharedDrawMapTransform
from viscy_transforms._random import TorchRandomizable, apply_to_selected, check_interval, check_probability

__all__ = ["BatchedRandAdjustContrast", "BatchedRandAdjustContrastd"]


def _gamma_range(gamma: tuple[float, float] | float) -> tuple[float, float]:
    low, high = check_interval((gamma, gamma) if isinstance(gamma, Real) else gamma, "gamma")
    if low <= 0:
        raise ValueError(f"gamma must be positive, got {gamma!r}")
    return low, high


def adjust_contrast(data: Tensor, gamma: Tensor, invert_image: bool, retain_stats: bool) -> Tensor:
    """MONAI ``AdjustContrast`` applied to every sample of a batch with its own gamma.

    Each sample is min-max normalized over all its elements, raised to ``gamma``, and scaled back.

    Parameters
    ----------
    data : Tensor
        Batch, first dimension B.
    gamma : Tensor
        Shape (B,).
    invert_image : bool
        Negate before and after the gamma transform.
    retain_stats : bool
        Restore each sample's mean and standard deviation afterwards.

    Returns
    -------
    Tensor
        The adjusted batch.
    """
    dims = tuple(range(1, data.ndim))
    gamma = gamma.to(device=data.device, dtype=data.dtype).reshape((-1,) + (1,) * (data.ndim - 1))
    if invert_image:
        data = -data
    if retain_stats:
        mean, std = data.mean(dims, keepdim=True), data.std(dims, keepdim=True)
    low = data.amin(dims, keepdim=True)
    value_range = data.amax(dims, keepdim=True) - low
    out = (data - low).div_(value_range + 1e-7).pow_(gamma).mul_(value_range).add_(low)
    if retain_stats:
        out = out - out.mean(dims, keepdim=True)
        out = out / (out.std(dims, keepdim=True) + 1e-8) * std + mean
    return -out if invert_image else out


class BatchedRandAdjustContrast(TorchRandomizable, Transform):
    """Randomly change the contrast of each sample with a gamma transform.

    Each sample is selected with probability ``prob`` and gets its own gamma ~ U(gamma range);
    the result matches MONAI ``AdjustContrast`` applied to that sample.

    Parameters
    ----------
    gamma : tuple[float, float] | float
        Range of gamma; a single number g means exactly g. Must be positive. Default (0.5, 4.5).
    prob : float
        Probability of adjusting one sample. Default 0.1.
    invert_image : bool
        Negate the sample before and after the gamma transform. Default False.
    retain_stats : bool
        Restore each sample's mean and standard deviation. Default False.
    """

    def __init__(
        self,
        gamma: tuple[float, float] | float = (0.5, 4.5),
        prob: float = 0.1,
        invert_image: bool = False,
        retain_stats: bool = False,
    ) -> None:
        self.gamma = _gamma_range(gamma)
        self.prob = check_probability(prob)
        self.invert_image = invert_image
        self.retain_stats = retain_stats
        self._selected = torch.zeros(0, dtype=torch.bool)
        self._gammas = torch.zeros(0, dtype=torch.float64)
        self._init_random_state()

    def randomize(self, data: Tensor) -> None:
        """Draw the selection and the gammas for a batch like ``data``."""
        self._selected = self._bernoulli(data.shape[0], self.prob)
        self._gammas = self._uniform(*self.gamma, data.shape[0])

    @torch.no_grad()
    def __call__(self, data: Tensor, randomize: bool = True) -> Tensor:
        """Adjust the contrast of a batch (any shape with the batch first).

        Parameters
        ----------
        data : Tensor
            The batch.
        randomize : bool
            Draw new parameters (default) or reuse the previous draw.

        Returns
        -------
        Tensor
            The adjusted batch; ``data`` itself when no sample is selected.
        """
        if randomize:
            self.randomize(data)
        return apply_to_selected(
            data,
            self._selected,
            lambda sub, index: adjust_contrast(sub, self._gammas[index], self.invert_image, self.retain_stats),
        )


class BatchedRandAdjustContrastd(SharedDrawMapTransform):
    """Dictionary version of :class:`BatchedRandAdjustContrast`: same selection and gammas for every key.

    Parameters
    ----------
    keys : Hashable | Sequence[Hashable]
        Keys of the batched tensors to adjust.
    gamma : tuple[float, float] | float
        Range of gamma. Default (0.5, 4.5).
    prob : float
        Probability of adjusting one sample. Default 0.1.
    invert_image : bool
        Negate before and after the gamma transform. Default False.
    retain_stats : bool
        Restore each sample's mean and standard deviation. Default False.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable],
        gamma: tuple[float, float] | float = (0.5, 4.5),
        prob: float = 0.1,
        invert_image: bool = False,
        retain_stats: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BatchedRandAdjustContrast(
            gamma=gamma, prob=prob, invert_image=invert_image, retain_stats=retain_stats
        )
