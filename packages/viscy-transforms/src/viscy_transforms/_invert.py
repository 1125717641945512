"""Random intensity inversion of a sample."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from viscy_transforms._mapping import Keys, SharedDrawMapTransform
from viscy_transforms._random import RandomTransform, check_probability
from viscy_transforms.kinds import TransformKind

__all__ = ["InvertParams", "RandInvertIntensity", "RandInvertIntensityd"]


@dataclass(frozen=True, eq=False)
class InvertParams:
    """One draw of :class:`RandInvertIntensity`: whether to invert the sample."""

    invert: bool


class RandInvertIntensity(RandomTransform[InvertParams]):
    """Array version of :class:`RandInvertIntensityd`: negate (``-x``) a sample with probability ``prob``.

    One decision per call, whatever the shape: on a collated batch it covers the whole batch.

    Parameters
    ----------
    prob : float
        Probability of inverting the sample. Default 0.1.
    """

    #: one decision whatever the shape, so keys of any shapes can share it
    shared_shape = ()

    def __init__(self, prob: float = 0.1) -> None:
        self.prob = check_probability(prob)
        super().__init__()

    def draw_parameters(self, shape: Sequence[int]) -> InvertParams:
        """Decide whether to invert this sample (``shape`` is not used)."""
        return InvertParams(invert=bool(self._bernoulli(1, self.prob).item()))

    def apply(self, data: Tensor, params: InvertParams) -> Tensor:
        """Negate ``data`` if the decision says so; ``data`` itself otherwise."""
        return -data if params.invert else data


class RandInvertIntensityd(SharedDrawMapTransform):
    """Negate (``-x``) every key of a sample with probability ``prob``.

    One decision per call, shared by all keys: a per-sample transform. On a collated batch the
    decision covers the whole batch.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the tensors to invert.
    prob : float
        Probability of inverting the sample. Default 0.1.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.INTENSITY
    runs_on_batches: ClassVar[bool] = True

    def __init__(self, keys: Keys, prob: float = 0.1, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = RandInvertIntensity(prob=prob)
