"""Random additive intensity offset (histogram shift), drawn per sample."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from viscy_transforms._mapping import Keys, SharedDrawMapTransform
from viscy_transforms._random import RandomTransform, apply_to_selected, check_interval, check_probability
from viscy_transforms.kinds import TransformKind

__all__ = ["BatchedRandHistogramShift", "BatchedRandHistogramShiftd", "HistogramShiftParams"]


@dataclass(frozen=True, eq=False)
class HistogramShiftParams:
    """One draw of :class:`BatchedRandHistogramShift`: which samples change (B,) and their offsets (B,)."""

    selected: Tensor
    offsets: Tensor


class BatchedRandHistogramShift(RandomTransform[HistogramShiftParams]):
    """Array version of :class:`BatchedRandHistogramShiftd`: add an offset ~ U(shift_range) to each sample of a batch.

    Each sample is selected with probability ``prob``. Works on any shape with the batch first.

    Parameters
    ----------
    shift_range, prob
        As in :class:`BatchedRandHistogramShiftd`.
    """

    def __init__(self, shift_range: tuple[float, float] = (-0.1, 0.1), prob: float = 0.1) -> None:
        self.shift_range = check_interval(shift_range, "shift_range")
        self.prob = check_probability(prob)
        super().__init__()

    def draw_parameters(self, shape: Sequence[int]) -> HistogramShiftParams:
        """Draw the selection and the offsets for a batch of ``shape``."""
        return HistogramShiftParams(
            selected=self._bernoulli(shape[0], self.prob), offsets=self._uniform(*self.shift_range, shape[0])
        )

    def apply(self, data: Tensor, params: HistogramShiftParams) -> Tensor:
        """Shift the selected samples by their offsets; ``data`` itself when none is selected."""

        def shift(sub: Tensor, index: Tensor) -> Tensor:
            offsets = params.offsets[index].to(device=sub.device, dtype=sub.dtype)
            return sub + offsets.reshape((-1,) + (1,) * (sub.ndim - 1))

        return apply_to_selected(data, params.selected, shift)


class BatchedRandHistogramShiftd(SharedDrawMapTransform):
    """Randomly shift the intensities of each sample by an offset ~ U(shift_range).

    Each sample is selected with probability ``prob``; every key of the sample gets the same
    selection and offsets.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the batched tensors to shift.
    shift_range : tuple[float, float]
        Range of the additive offset. Default (-0.1, 0.1).
    prob : float
        Probability of shifting one sample. Default 0.1.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.INTENSITY
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self,
        keys: Keys,
        shift_range: tuple[float, float] = (-0.1, 0.1),
        prob: float = 0.1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BatchedRandHistogramShift(shift_range=shift_range, prob=prob)
