"""Random additive intensity offset (histogram shift), drawn per sample."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from torch import Tensor

from viscy_transforms._mapping import RandomMapTransform
from viscy_transforms._random import TorchRandomizable, apply_to_selected, check_interval, check_probability

__all__ = ["BatchedRandHistogramShiftd"]


class BatchedRandHistogramShiftd(TorchRandomizable, RandomMapTransform):
    """Randomly shift the intensities of each sample by an offset ~ U(shift_range).

    Each sample is selected with probability ``prob``; every key of the sample gets the same
    selection and offsets.

    Parameters
    ----------
    keys : Hashable | Sequence[Hashable]
        Keys of the batched tensors to shift.
    shift_range : tuple[float, float]
        Range of the additive offset. Default (-0.1, 0.1).
    prob : float
        Probability of shifting one sample. Default 0.1.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable],
        shift_range: tuple[float, float] = (-0.1, 0.1),
        prob: float = 0.1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.shift_range = check_interval(shift_range, "shift_range")
        self.prob = check_probability(prob)
        self._selected = torch.zeros(0, dtype=torch.bool)
        self._offsets = torch.zeros(0, dtype=torch.float64)
        self._init_random_state()

    def randomize(self, data: Tensor) -> None:
        """Draw the selection and the offsets for a batch like ``data``."""
        self._selected = self._bernoulli(data.shape[0], self.prob)
        self._offsets = self._uniform(*self.shift_range, data.shape[0])

    def _shift(self, data: Tensor, index: Tensor) -> Tensor:
        offsets = self._offsets[index].to(device=data.device, dtype=data.dtype)
        return data + offsets.reshape((-1,) + (1,) * (data.ndim - 1))

    def apply(self, data: Tensor) -> Tensor:
        """Shift the selected samples of one key's batch by their offsets."""
        return apply_to_selected(data, self._selected, self._shift)
