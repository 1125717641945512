"""Random multiplicative intensity scaling, drawn per sample (optionally per channel)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import ClassVar

from torch import Tensor

from viscy_transforms._mapping import Keys, SharedDrawMapTransform
from viscy_transforms._random import RandomTransform, apply_to_selected, check_interval, check_probability
from viscy_transforms.kinds import TransformKind

__all__ = ["BatchedRandScaleIntensity", "BatchedRandScaleIntensityd", "ScaleIntensityParams"]


@dataclass(frozen=True, eq=False)
class ScaleIntensityParams:
    """One draw of :class:`BatchedRandScaleIntensity`: which samples change (B,) and their factors (B,) or (B, C)."""

    selected: Tensor
    factors: Tensor


class BatchedRandScaleIntensity(RandomTransform[ScaleIntensityParams]):
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

    transform_kind: ClassVar[TransformKind] = TransformKind.INTENSITY
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self, factors: tuple[float, float] | float = 0.1, prob: float = 0.1, channel_wise: bool = False
    ) -> None:
        self.factors = check_interval((-factors, factors) if isinstance(factors, Real) else factors, "factors")
        self.prob = check_probability(prob)
        self.channel_wise = channel_wise
        if channel_wise:
            self.shared_shape = ((slice(0, 2), "batch sizes and channel counts"),)
        super().__init__()

    def draw_parameters(self, shape: Sequence[int]) -> ScaleIntensityParams:
        """Draw the selection and the factors, shape (B,) or (B, C), for a batch of ``shape``."""
        selected = self._bernoulli(shape[0], self.prob)
        size = tuple(shape[:2]) if self.channel_wise and len(shape) > 2 else (shape[0],)
        return ScaleIntensityParams(selected=selected, factors=self._uniform(*self.factors, size))

    def apply(self, data: Tensor, params: ScaleIntensityParams) -> Tensor:
        """Scale the selected samples (any shape, batch first, channels second); ``data`` itself when none is."""

        def scale(sub: Tensor, index: Tensor) -> Tensor:
            factors = params.factors[index]
            if factors.ndim == 2 and factors.shape[1] != sub.shape[1]:
                raise ValueError(
                    f"channel-wise factors were drawn for {factors.shape[1]} channels, "
                    f"got data of shape {tuple(data.shape)}"
                )
            factors = factors.to(device=sub.device, dtype=sub.dtype)
            return sub * (1 + factors.reshape(factors.shape + (1,) * (sub.ndim - factors.ndim)))

        return apply_to_selected(data, params.selected, scale)


class BatchedRandScaleIntensityd(SharedDrawMapTransform):
    """Dictionary version of :class:`BatchedRandScaleIntensity`: same selection and factors for every key.

    Parameters
    ----------
    keys : str or sequence of str
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

    transform_kind: ClassVar[TransformKind] = TransformKind.INTENSITY
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self,
        keys: Keys,
        factors: tuple[float, float] | float = 0.1,
        prob: float = 0.1,
        channel_wise: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BatchedRandScaleIntensity(factors=factors, prob=prob, channel_wise=channel_wise)
