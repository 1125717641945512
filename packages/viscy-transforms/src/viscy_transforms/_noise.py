"""Additive Gaussian noise generated with torch on the data's device, per sample or per batch."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from functools import partial

import numpy as np
import torch
from monai.transforms import Transform
from numpy.typing import DTypeLike
from torch import Tensor

from viscy_transforms._mapping import SharedDrawMapTransform
from viscy_transforms._random import (
    TorchRandomizable,
    apply_to_selected,
    check_probability,
    field_generator,
)

__all__ = [
    "BatchedRandGaussianNoise",
    "BatchedRandGaussianNoised",
    "RandGaussianNoiseTensor",
    "RandGaussianNoiseTensord",
]


def _standard_normal(shape: Sequence[int], seed: int, like: Tensor) -> Tensor:
    if not like.is_floating_point():
        raise TypeError(f"Gaussian noise needs floating-point data, got dtype {like.dtype}")
    return torch.randn(shape, generator=field_generator(seed, like.device), device=like.device, dtype=like.dtype)


class RandGaussianNoiseTensor(TorchRandomizable, Transform):
    """Add Gaussian noise to one sample with probability ``prob`` (MONAI ``RandGaussianNoise`` semantics).

    The noise is generated with torch directly on the input's device and in its dtype.

    Parameters
    ----------
    prob : float
        Probability of adding noise. Default 0.1.
    mean : float
        Mean of the noise. Default 0.0.
    std : float
        Standard deviation of the noise; with ``sample_std`` the standard deviation is drawn from
        U(0, std) at every call. Default 0.1.
    dtype : DTypeLike
        Accepted for signature compatibility with MONAI; the output keeps the input's dtype.
    sample_std : bool
        Draw the standard deviation from U(0, std). Default True.
    """

    def __init__(
        self,
        prob: float = 0.1,
        mean: float = 0.0,
        std: float = 0.1,
        dtype: DTypeLike = np.float32,
        sample_std: bool = True,
    ) -> None:
        if std < 0:
            raise ValueError(f"std must be non-negative, got {std!r}")
        self.prob = check_probability(prob)
        self.mean = mean
        self.std = std
        self.dtype = dtype
        self.sample_std = sample_std
        self._selected = torch.zeros(0, dtype=torch.bool)
        self._stds = torch.zeros(0, dtype=torch.float64)
        self._noise_seed = 0
        self._init_random_state()

    def _draw(self, count: int) -> None:
        self._selected = self._bernoulli(count, self.prob)
        self._stds = self._uniform(0.0, self.std, count) if self.sample_std else torch.full((count,), float(self.std))
        self._noise_seed = self._draw_seed()

    def randomize(self, data: Tensor) -> None:
        """Draw whether to add noise, the standard deviation and the noise seed."""
        self._draw(1)

    def _add_noise(self, data: Tensor, index: Tensor, mean: float | None) -> Tensor:
        noise = _standard_normal(data.shape, self._noise_seed, data)
        std = self._stds[index].to(device=data.device, dtype=data.dtype).reshape((-1,) + (1,) * (data.ndim - 1))
        return data + (noise * std + (self.mean if mean is None else mean))

    def __call__(self, img: Tensor, mean: float | None = None, randomize: bool = True) -> Tensor:
        """Add noise to one sample.

        Parameters
        ----------
        img : Tensor
            The sample, any shape.
        mean : float | None
            Overrides the noise mean for this call.
        randomize : bool
            Draw new parameters and noise (default) or reuse the previous draw.

        Returns
        -------
        Tensor
            The noisy sample (same values as ``img`` when no noise is added).
        """
        if randomize:
            self.randomize(img)
        with torch.no_grad():
            return apply_to_selected(img.unsqueeze(0), self._selected, partial(self._add_noise, mean=mean)).squeeze(0)


class BatchedRandGaussianNoise(RandGaussianNoiseTensor):
    """Add Gaussian noise to each sample of a batch with probability ``prob``.

    Each selected sample gets its own noise field and, with ``sample_std``, its own standard
    deviation ~ U(0, std). Parameters as in :class:`RandGaussianNoiseTensor`.
    """

    def randomize(self, data: Tensor) -> None:
        """Draw the selection, the standard deviations and the noise seed for a batch like ``data``."""
        self._draw(data.shape[0])

    def __call__(self, img: Tensor, mean: float | None = None, randomize: bool = True) -> Tensor:
        """Add noise to a batch (any shape with the batch first).

        Parameters
        ----------
        img : Tensor
            The batch.
        mean : float | None
            Overrides the noise mean for this call.
        randomize : bool
            Draw new parameters and noise (default) or reuse the previous draw.

        Returns
        -------
        Tensor
            The noisy batch; ``img`` itself when no sample is selected.
        """
        if randomize:
            self.randomize(img)
        with torch.no_grad():
            return apply_to_selected(img, self._selected, partial(self._add_noise, mean=mean))


class _NoiseMapTransform(SharedDrawMapTransform):
    """Noise applied to several keys: the same noise field, so the keys must have the same shape."""

    shared_shape = ((slice(None), "shapes"),)


class RandGaussianNoiseTensord(_NoiseMapTransform):
    """Dictionary version of :class:`RandGaussianNoiseTensor`: every key gets the same noise.

    Parameters
    ----------
    keys : Hashable | Sequence[Hashable]
        Keys of the tensors to make noisy; they must have the same shape.
    prob : float
        Probability of adding noise to the sample. Default 0.1.
    mean : float
        Mean of the noise. Default 0.0.
    std : float
        Standard deviation (or its upper bound with ``sample_std``). Default 0.1.
    dtype : DTypeLike
        Accepted for signature compatibility; the output keeps the input's dtype.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    sample_std : bool
        Draw the standard deviation from U(0, std). Default True.
    """

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable],
        prob: float = 0.1,
        mean: float = 0.0,
        std: float = 0.1,
        dtype: DTypeLike = np.float32,
        allow_missing_keys: bool = False,
        sample_std: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = RandGaussianNoiseTensor(prob=prob, mean=mean, std=std, dtype=dtype, sample_std=sample_std)


class BatchedRandGaussianNoised(_NoiseMapTransform):
    """Dictionary version of :class:`BatchedRandGaussianNoise`.

    ``prob`` is per sample. Every key gets the same selection, standard deviations and noise
    field, so the keys must have the same shape.

    Parameters
    ----------
    keys : Hashable | Sequence[Hashable]
        Keys of the batched tensors to make noisy.
    prob : float
        Probability of adding noise to one sample. Default 0.1.
    mean : float
        Mean of the noise. Default 0.0.
    std : float
        Standard deviation (or its upper bound with ``sample_std``). Default 0.1.
    dtype : DTypeLike
        Accepted for signature compatibility; the output keeps the input's dtype.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    sample_std : bool
        Draw each sample's standard deviation from U(0, std). Default True.
    """

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable],
        prob: float = 0.1,
        mean: float = 0.0,
        std: float = 0.1,
        dtype: DTypeLike = np.float32,
        allow_missing_keys: bool = False,
        sample_std: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BatchedRandGaussianNoise(prob=prob, mean=mean, std=std, dtype=dtype, sample_std=sample_std)
