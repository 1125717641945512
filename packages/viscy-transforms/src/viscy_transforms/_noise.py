"""Additive Gaussian noise generated with torch on the data's device, per sample or per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import numpy as np
import torch
from numpy.typing import DTypeLike
from torch import Tensor

from viscy_transforms._mapping import Keys, SharedDrawMapTransform
from viscy_transforms._random import (
    RandomTransform,
    apply_to_selected,
    check_kept_dtype,
    check_probability,
    field_generator,
)
from viscy_transforms.kinds import TransformKind

__all__ = [
    "BatchedRandGaussianNoise",
    "BatchedRandGaussianNoised",
    "NoiseParams",
    "RandGaussianNoiseTensor",
    "RandGaussianNoiseTensord",
]


def _standard_normal(shape: Sequence[int], seed: int, like: Tensor) -> Tensor:
    if not like.is_floating_point():
        raise TypeError(f"Gaussian noise needs floating-point data, got dtype {like.dtype}")
    return torch.randn(shape, generator=field_generator(seed, like.device), device=like.device, dtype=like.dtype)


@dataclass(frozen=True, eq=False)
class NoiseParams:
    """One draw of the Gaussian noise transforms.

    ``selected`` (N,) says which samples get noise, ``stds`` (N,) their standard deviations, and
    ``seed`` seeds the noise field, generated on the data's device (N is 1 for one sample).
    """

    selected: Tensor
    stds: Tensor
    seed: int


class RandGaussianNoiseTensor(RandomTransform[NoiseParams]):
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
        Accepted for reference configs; only the default float32 (or None) is accepted: the output
        keeps the input's dtype (cast the data before this transform to change it).
    sample_std : bool
        Draw the standard deviation from U(0, std). Default True.

    Raises
    ------
    ValueError
        If ``std`` is negative, ``prob`` is not in [0, 1], or ``dtype`` is neither float32 nor None.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.INTENSITY
    runs_on_batches: ClassVar[bool] = True

    #: one noise field for every key of a sample, so the keys must have the same shape
    shared_shape = ((slice(None), "shapes"),)

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
        check_kept_dtype(dtype, type(self).__name__)
        self.prob = check_probability(prob)
        self.mean = mean
        self.std = std
        self.sample_std = sample_std
        super().__init__()

    def _draw(self, count: int) -> NoiseParams:
        selected = self._bernoulli(count, self.prob)
        stds = self._uniform(0.0, self.std, count) if self.sample_std else torch.full((count,), float(self.std))
        return NoiseParams(selected=selected, stds=stds, seed=self._draw_seed())

    def draw_parameters(self, shape: Sequence[int]) -> NoiseParams:
        """Draw whether to add noise to the sample, the standard deviation and the noise seed."""
        return self._draw(1)

    def _add_noise(self, data: Tensor, index: Tensor, params: NoiseParams, mean: float | None) -> Tensor:
        noise = _standard_normal(data.shape, params.seed, data)
        std = params.stds[index].to(device=data.device, dtype=data.dtype).reshape((-1,) + (1,) * (data.ndim - 1))
        return data + (noise * std + (self.mean if mean is None else mean))

    def apply(self, data: Tensor, params: NoiseParams, mean: float | None = None) -> Tensor:
        """Add the drawn noise to one sample (any shape); the same values as ``data`` when no noise is added.

        ``mean``, when given, overrides the noise mean.
        """
        add_noise = partial(self._add_noise, params=params, mean=mean)
        return apply_to_selected(data.unsqueeze(0), params.selected, add_noise).squeeze(0)

    @torch.no_grad()
    def __call__(
        self, img: Tensor, mean: float | None = None, randomize: bool = True, params: NoiseParams | None = None
    ) -> Tensor:
        """Add noise, with new random parameters, the latest ones or the given ones.

        Parameters
        ----------
        img : Tensor
            The sample, any shape (for :class:`BatchedRandGaussianNoise`, a batch with the batch first).
        mean : float | None
            Overrides the noise mean for this call.
        randomize : bool
            Draw new parameters and noise (default) or reuse the latest draw.
        params : NoiseParams | None
            Parameters to apply instead.

        Returns
        -------
        Tensor
            The noisy data; a batch in which no sample is selected is returned itself.
        """
        return self.apply(img, self.resolve_parameters(img, randomize, params), mean=mean)


class BatchedRandGaussianNoise(RandGaussianNoiseTensor):
    """Add Gaussian noise to each sample of a batch with probability ``prob``.

    Each selected sample gets its own noise field and, with ``sample_std``, its own standard
    deviation ~ U(0, std). Parameters as in :class:`RandGaussianNoiseTensor`.
    """

    def draw_parameters(self, shape: Sequence[int]) -> NoiseParams:
        """Draw the selection, the standard deviations and the noise seed for a batch of ``shape``."""
        return self._draw(shape[0])

    def apply(self, data: Tensor, params: NoiseParams, mean: float | None = None) -> Tensor:
        """Add the drawn noise to a batch (any shape, batch first); ``data`` itself when no sample is selected.

        ``mean``, when given, overrides the noise mean.
        """
        return apply_to_selected(data, params.selected, partial(self._add_noise, params=params, mean=mean))


class _NoiseMapTransform(SharedDrawMapTransform):
    """Dictionary version of a Gaussian noise transform ``noise_class``: the same noise for every key.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the tensors to make noisy; they must have the same shape.
    prob : float
        Probability of adding noise to the sample. Default 0.1.
    mean : float
        Mean of the noise. Default 0.0.
    std : float
        Standard deviation (or its upper bound with ``sample_std``). Default 0.1.
    dtype : DTypeLike
        Accepted for reference configs; only the default float32 (or None) is accepted: the output
        keeps the input's dtype.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    sample_std : bool
        Draw the standard deviation from U(0, std). Default True.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.INTENSITY
    runs_on_batches: ClassVar[bool] = True

    noise_class: type[RandGaussianNoiseTensor]

    def __init__(
        self,
        keys: Keys,
        prob: float = 0.1,
        mean: float = 0.0,
        std: float = 0.1,
        dtype: DTypeLike = np.float32,
        allow_missing_keys: bool = False,
        sample_std: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = self.noise_class(prob=prob, mean=mean, std=std, dtype=dtype, sample_std=sample_std)


class RandGaussianNoiseTensord(_NoiseMapTransform):
    """Dictionary version of :class:`RandGaussianNoiseTensor`: every key gets the same noise.

    Parameters as in :class:`RandGaussianNoiseTensor`, plus ``keys`` (tensors of one shape) and
    ``allow_missing_keys`` (skip absent keys instead of raising KeyError).
    """

    noise_class = RandGaussianNoiseTensor


class BatchedRandGaussianNoised(_NoiseMapTransform):
    """Dictionary version of :class:`BatchedRandGaussianNoise`.

    ``prob`` is per sample. Every key gets the same selection, standard deviations and noise
    field, so the keys must have the same shape. The other parameters are those of
    :class:`BatchedRandGaussianNoise`.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the batched tensors to make noisy.
    prob : float
        Probability of adding noise to one sample. Default 0.1.
    sample_std : bool
        Draw each sample's standard deviation from U(0, std). Default True.
    """

    noise_class = BatchedRandGaussianNoise
