"""Random Gaussian blur of batched volumes, drawn per sample and per axis."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from numbers import Real

import torch
from monai.transforms import Transform
from torch import Tensor

from viscy_transforms._gaussian_filter import BORDER_TYPES, separable_gaussian_filter
from viscy_transforms._mapping import SharedDrawMapTransform
from viscy_transforms._random import TorchRandomizable, apply_to_selected, check_interval, check_probability

__all__ = ["BatchedRandGaussianSmooth", "BatchedRandGaussianSmoothd"]


def _sigma_range(sigma: tuple[float, float] | float, name: str) -> tuple[float, float]:
    low, high = check_interval((sigma, sigma) if isinstance(sigma, Real) else sigma, name)
    if low < 0:
        raise ValueError(f"{name} must be non-negative, got {sigma!r}")
    return low, high


class BatchedRandGaussianSmooth(TorchRandomizable, Transform):
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
        self._selected = torch.zeros(0, dtype=torch.bool)
        self._sigmas = torch.zeros(0, 3, dtype=torch.float64)
        self._init_random_state()

    def randomize(self, data: Tensor) -> None:
        """Draw the selection and the sigmas, shape (B, 3) in ZYX order, for a batch like ``data``."""
        batch_size = data.shape[0]
        self._selected = self._bernoulli(batch_size, self.prob)
        ranges = (self.sigma_z, self.sigma_y, self.sigma_x)
        self._sigmas = torch.stack([self._uniform(low, high, batch_size) for low, high in ranges], dim=1)

    @torch.no_grad()
    def __call__(self, data: Tensor, randomize: bool = True) -> Tensor:
        """Blur a (B, C, Z, Y, X) batch.

        Parameters
        ----------
        data : Tensor
            The batch.
        randomize : bool
            Draw new parameters (default) or reuse the previous draw.

        Returns
        -------
        Tensor
            The blurred batch; ``data`` itself when no sample is selected.
        """
        if data.ndim != 5:
            raise ValueError(f"{type(self).__name__} expects (B, C, Z, Y, X) data, got shape {tuple(data.shape)}")
        if randomize:
            self.randomize(data)
        return apply_to_selected(
            data,
            self._selected,
            lambda sub, index: separable_gaussian_filter(sub, self._sigmas[index], self.truncated, self.border_type),
        )


class BatchedRandGaussianSmoothd(SharedDrawMapTransform):
    """Dictionary version of :class:`BatchedRandGaussianSmooth`: same selection and sigmas for every key.

    Parameters
    ----------
    keys : Hashable | Sequence[Hashable]
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

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable],
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
