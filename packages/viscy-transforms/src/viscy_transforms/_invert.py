"""Random intensity inversion of a sample."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from torch import Tensor

from viscy_transforms._mapping import RandomMapTransform
from viscy_transforms._random import TorchRandomizable, check_probability

__all__ = ["RandInvertIntensityd"]


class RandInvertIntensityd(TorchRandomizable, RandomMapTransform):
    """Negate (``-x``) every key of a sample with probability ``prob``.

    One decision per call, shared by all keys: a per-sample transform. On a collated batch the
    decision covers the whole batch.

    Parameters
    ----------
    keys : Hashable | Sequence[Hashable]
        Keys of the tensors to invert.
    prob : float
        Probability of inverting the sample. Default 0.1.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    shared_shape = ()

    def __init__(
        self, keys: Hashable | Sequence[Hashable], prob: float = 0.1, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.prob = check_probability(prob)
        self._invert = False
        self._init_random_state()

    def randomize(self, data: Tensor) -> None:
        """Decide whether to invert this sample."""
        self._invert = bool(self._bernoulli(1, self.prob).item())

    def apply(self, data: Tensor) -> Tensor:
        """Negate ``data`` if this call's decision says so."""
        return -data if self._invert else data
