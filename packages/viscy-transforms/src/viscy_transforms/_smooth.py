"""Random Gaussian blur of batched volumes, drawn per sample and per axis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import ClassVar

import torch
from torch import Tensor

from viscy_transforms._gaussian_filter import BORDER_TYPES, separable_gaussian_filter
from viscy_transforms._mapping import Keys, SharedDrawMapTransform
from viscy_transforms._random import (
    RandomTransform,
    apply_to_selected,
    check_batch_shape,
    check_interval,
    check_probability,
)
from viscy_transforms.kinds import TransformKind

__all__ = ["BatchedRandGaussianSmooth", "BatchedRandGaussianSmoothd", "SmoothParams"]


def _sigma_range(sigma: tuple[float, float] | float, name: str) -> tuple[float, float]:
    low, high = check_interval((sigma, sigma) if isinstance(sigma, Real) else sigma, name)
    if low < 0:
        raise ValueError(f"{name} must be non-negative, got {sigma!r}")
    return low, high


@dataclass(frozen=True, eq=False)
class SmoothParams:
    """One draw of :class:`BatchedRandGaussianSmooth`: which samples change (B,) and their sigmas (B, 3), ZYX."""

    selected: Tensor
    sigmas: Tensor


class BatchedRandGaussianSmooth(RandomTransform[SmoothParams]):
    """Randomly blur each sample of a (B, C, Z, Y, X) batch with an anisotropic Gaussian.

    Each sample is selected with probability ``prob`` and gets its own sigma along each axis.

    Axis convention: ``sigma_x`` blurs X (the last axis), ``sigma_y`` blurs Y and ``sigma_z``
    blurs Z (depth), as the names say for (B, C, Z, Y, X) data. This is the reference VisCy
    behaviour; note that MONAI's ``RandGaussianSmooth`` (and the :class:`RandGaussianSmoothd`
    wrapper) use the opposite convention, with ``sigma_x`` on the first spatial axis.

    Parameters
    ----------
    sigma_x, sigma_y, sigma_z : tuple[float, float] | float
        Sigma along X, Y and Z in voxels: a fixed value or a (min, max) range. Default (1.0, 3.0).
    truncated : float
        Kernel radius in units of sigma; the radius is that of the largest sigma in the batch,
        computed as MONAI ``GaussianSmooth`` does. Default 4.0.
    prob : float
        Probability of blurring one sample. Default 0.5.
    border_type : str
        Padding: "constant" (zeros, default), "reflect", "replicate" or "circular".
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.INTENSITY
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self,
        sigma_x: tuple[float, float] | float = (1.0, 3.0),
        sigma_y: tuple[float, float] | float = (1.0, 3.0),
        sigma_z: tuple[float, float] | float = (1.0, 3.0),
        truncated: float = 4.0,
        prob: float = 0.5,
        border_type: str = "constant",
    ) -> None:
        if border_type not in BORDER_TYPES:
            raise ValueError(f"border_type must be one of {BORDER_TYPES}, got {border_type!r}")
        if truncated <= 0:
            raise ValueError(f"truncated must be positive, got {truncated!r}")
        self.sigma_x = _sigma_range(sigma_x, "sigma_x")
        self.sigma_y = _sigma_range(sigma_y, "sigma_y")
        self.sigma_z = _sigma_range(sigma_z, "sigma_z")
        self.truncated = truncated
        self.prob = check_probability(prob)
        self.border_type = border_type
        super().__init__()

    def draw_parameters(self, shape: Sequence[int]) -> SmoothParams:
        """Draw the selection and the sigmas, shape (B, 3) in ZYX order, for a (B, C, Z, Y, X) batch of ``shape``."""
        check_batch_shape(shape, self)
        batch_size = shape[0]
        selected = self._bernoulli(batch_size, self.prob)
        ranges = (self.sigma_z, self.sigma_y, self.sigma_x)
        sigmas = torch.stack([self._uniform(low, high, batch_size) for low, high in ranges], dim=1)
        return SmoothParams(selected=selected, sigmas=sigmas)

    def apply(self, data: Tensor, params: SmoothParams) -> Tensor:
        """Blur the selected samples of a (B, C, Z, Y, X) batch; ``data`` itself when none is selected."""
        check_batch_shape(data.shape, self)
        return apply_to_selected(
            data,
            params.selected,
            lambda sub, index: separable_gaussian_filter(sub, params.sigmas[index], self.truncated, self.border_type),
        )


class BatchedRandGaussianSmoothd(SharedDrawMapTransform):
    """Dictionary version of :class:`BatchedRandGaussianSmooth`: same selection and sigmas for every key.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the batched tensors to blur.
    sigma_x, sigma_y, sigma_z : tuple[float, float] | float
        Sigma along X (last axis), Y and Z (depth). Default (1.0, 3.0).
    truncated : float
        Kernel radius in units of sigma. Default 4.0.
    prob : float
        Probability of blurring one sample. Default 0.5.
    border_type : str
        Padding mode. Default "constant".
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.INTENSITY
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self,
        keys: Keys,
        sigma_x: tuple[float, float] | float = (1.0, 3.0),
        sigma_y: tuple[float, float] | float = (1.0, 3.0),
        sigma_z: tuple[float, float] | float = (1.0, 3.0),
        truncated: float = 4.0,
        prob: float = 0.5,
        border_type: str = "constant",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BatchedRandGaussianSmooth(
            sigma_x=sigma_x,
            sigma_y=sigma_y,
            sigma_z=sigma_z,
            truncated=truncated,
            prob=prob,
            border_type=border_type,
        )
