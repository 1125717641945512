"""Random gamma contrast adjustment, drawn per sample."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import ClassVar

from torch import Tensor

from viscy_transforms._mapping import Keys, SharedDrawMapTransform
from viscy_transforms._random import RandomTransform, apply_to_selected, check_interval, check_probability
from viscy_transforms.kinds import TransformKind

__all__ = ["BatchedRandAdjustContrast", "BatchedRandAdjustContrastd", "ContrastParams"]


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


@dataclass(frozen=True, eq=False)
class ContrastParams:
    """One draw of :class:`BatchedRandAdjustContrast`: which samples change (B,) and their gammas (B,)."""

    selected: Tensor
    gammas: Tensor


class BatchedRandAdjustContrast(RandomTransform[ContrastParams]):
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

    transform_kind: ClassVar[TransformKind] = TransformKind.INTENSITY
    runs_on_batches: ClassVar[bool] = True

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
        super().__init__()

    def draw_parameters(self, shape: Sequence[int]) -> ContrastParams:
        """Draw the selection and the gammas for a batch of ``shape`` (any shape, batch first)."""
        selected = self._bernoulli(shape[0], self.prob)
        return ContrastParams(selected=selected, gammas=self._uniform(*self.gamma, shape[0]))

    def apply(self, data: Tensor, params: ContrastParams) -> Tensor:
        """Adjust the contrast of the selected samples; ``data`` itself when none is selected."""
        return apply_to_selected(
            data,
            params.selected,
            lambda sub, index: adjust_contrast(sub, params.gammas[index], self.invert_image, self.retain_stats),
        )


class BatchedRandAdjustContrastd(SharedDrawMapTransform):
    """Dictionary version of :class:`BatchedRandAdjustContrast`: same selection and gammas for every key.

    Parameters
    ----------
    keys : str or sequence of str
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

    transform_kind: ClassVar[TransformKind] = TransformKind.INTENSITY
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self,
        keys: Keys,
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
