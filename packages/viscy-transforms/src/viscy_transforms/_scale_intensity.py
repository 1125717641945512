"""Random multiplicative intensity scaling, drawn per sample (optionally per channel)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from numbers import Real

import torch
from monai.transforms import Transform
from torch import Tensor

from viscy_transforms._mapping import SharedDrawMapTransform
from viscy_transforms._random import TorchRandomizable, apply_to_selected, check_interval, check_probability

__all__ = ["BatchedRandScaleIntensity", "BatchedRandScaleIntensityd"]


class BatchedRandScaleIntensity(TorchRandomizable, Transform):
    """Randomly scale the intensity of each sample: ``x * (1 + f)`` with f ~ U(factors).

    Matches MONAI ``RandScaleIntensity`` applied to each sample, with a selection and factor of its own.

    Parameters
    ----------
    factors : tuple[float, float] | float
        Range of f; a single number f means (-|f|, |f|). Default 0.1.
    prob : float
        Probability of scaling one sample. Default 0.1.
    channel_wise : bool
        Draw one factor per (sample, channel) instead of one per sample. Default False.
    """

    def __init__(
        self, factors: tuple[float, float] | float = 0.1, prob: float = 0.1, channel_wise: bool = False
    ) -> None:
        self.factors = check_interval((-factors, factors) if isinstance(factors, Real) else factors, "factors")
        self.prob = check_probability(prob)
        self.channel_wise = channel_wise
        self._selected = torch.zeros(0, dtype=torch.bool)
        self._factors = torch.zeros(0, dtype=torch.float64)
        self._init_random_state()

    def randomize(self, data: Tensor) -> None:
        """Draw the selection and the factors, shape (B,) or (B, C), for a batch like ``data``."""
        self._selected = self._bernoulli(data.shape[0], self.prob)
        size = tuple(data.shape[:2]) if self.channel_wise and data.ndim > 2 else (data.shape[0],)
        self._factors = self._uniform(*self.factors, size)

    def _scale(self, data: Tensor, index: Tensor) -> Tensor:
        factors = self._factors[index]
        if factors.ndim == 2 and factors.shape[1] != data.shape[1]:
            raise ValueError(
                f"channel-wise factors were drawn for {factors.shape[1]} channels, "
                f"got data of shape {tuple(data.shape)}"
            )
        factors = factors.to(device=data.device, dtype=data.dtype)
        return data * (1 + factors.reshape(factors.shape + (1,) * (data.ndim - factors.ndim)))

    @torch.no_grad()
    def __call__(self, data: Tensor, randomize: bool = True) -> Tensor:
        """Scale a batch (any shape with the batch first, channels second).

        Parameters
        ----------
        data : Tensor
            The batch.
        randomize : bool
            Draw new parameters (default) or reuse the previous draw.

        Returns
        -------
        Tensor
            The scaled batch; ``data`` itself when no sample is selected.
        """
        if randomize:
            self.randomize(data)
        return apply_to_selected(data, self._selected, self._scale)


class BatchedRandScaleIntensityd(SharedDrawMapTransform):
    """Dictionary version of :class:`BatchedRandScaleIntensity`: same selection and factors for every key.

    Parameters
    ----------
    keys : Hashable | Sequence[Hashable]
        Keys of the batched tensors to scale (with ``channel_wise`` they must have the same channels).
    factors : tuple[float, float] | float
        Range of f. Default 0.1.
    prob : float
        Probability of scaling one sample. Default 0.1.
    channel_wise : bool
        One factor per (sample, channel). Default False.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable],
        factors: tuple[float, float] | float = 0.1,
        prob: float = 0.1,
        channel_wise: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BatchedRandScaleIntensity(factors=factors, prob=prob, channel_wise=channel_wise)
        if channel_wise:
            self.shared_shape = ((slice(0, 2), "batch sizes and channel counts"),)
