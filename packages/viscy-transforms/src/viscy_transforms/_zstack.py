"""Random integer shift of batched volumes along Z, drawn per sample."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from viscy_transforms._mapping import Keys, SharedDrawMapTransform
from viscy_transforms._random import RandomTransform, apply_to_selected, check_batch_shape, check_probability
from viscy_transforms.kinds import TransformKind

__all__ = ["BatchedRandZStackShift", "BatchedRandZStackShiftd", "ZStackShiftParams", "shift_along_z"]

_MODES = ("constant", "edge", "wrap", "reflect")


def _source_slices(shifts: Tensor, depth: int, mode: str) -> tuple[Tensor, Tensor]:
    """Source slice of every output slice, shape (N, depth), and whether it lies inside the stack."""
    source = torch.arange(depth, device=shifts.device).unsqueeze(0) - shifts.unsqueeze(1)
    inside = (source >= 0) & (source < depth)
    if mode == "wrap":
        source = source.remainder(depth)
    elif mode == "reflect" and depth > 1:
        period = 2 * (depth - 1)
        source = source.remainder(period)
        source = torch.where(source >= depth, period - source, source)
    # clamping gives "edge"; for "constant" the caller overwrites the slices that are not inside
    return source.clamp(0, depth - 1), inside


def shift_along_z(data: Tensor, shifts: Tensor, mode: str = "constant", cval: float = 0.0) -> Tensor:
    """Shift every sample of a (N, C, Z, Y, X) batch by its own integer number of slices.

    Output slice ``z`` of sample ``n`` is input slice ``z - shifts[n]``: a positive shift moves
    the content towards higher Z. Slices with no source are filled according to ``mode``.

    Parameters
    ----------
    data : Tensor
        Shape (N, C, Z, Y, X).
    shifts : Tensor
        Integer tensor of shape (N,).
    mode : str
        "constant" (fill with ``cval``), "edge" (repeat the nearest slice), "wrap" (roll) or
        "reflect" (mirror about the end slices, which are not repeated).
    cval : float
        Fill value of the "constant" mode.

    Returns
    -------
    Tensor
        The shifted batch, contiguous, same shape, dtype and device.
    """
    depth = data.shape[2]
    source, inside = _source_slices(shifts.to(device=data.device, dtype=torch.long), depth, mode)
    batch = torch.arange(data.shape[0], device=data.device).unsqueeze(1)
    # indexing (N, Z, C, Y, X) with (batch, source) gathers whole slices: result (N, Z, C, Y, X)
    shifted = data.transpose(1, 2)[batch, source].transpose(1, 2)
    if mode == "constant":
        fill = torch.full((), cval, dtype=data.dtype, device=data.device)
        shifted = torch.where(inside.reshape(data.shape[0], 1, depth, 1, 1), shifted, fill)
    return shifted.contiguous()


@dataclass(frozen=True, eq=False)
class ZStackShiftParams:
    """One draw of :class:`BatchedRandZStackShift`: which samples change (B,) and their shifts in slices (B,)."""

    selected: Tensor
    shifts: Tensor


class BatchedRandZStackShift(RandomTransform[ZStackShiftParams]):
    """Array version of :class:`BatchedRandZStackShiftd`: shift each sample of a (B, C, Z, Y, X) batch along Z.

    Each sample is selected with probability ``prob`` and shifted by its own number of slices
    (see :func:`shift_along_z`).

    Parameters
    ----------
    max_shift, prob, mode, cval
        As in :class:`BatchedRandZStackShiftd`.
    """

    def __init__(self, max_shift: int = 3, prob: float = 0.1, mode: str = "constant", cval: float = 0.0) -> None:
        if not isinstance(max_shift, int) or max_shift < 0:
            raise ValueError(f"max_shift must be a non-negative int, got {max_shift!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.max_shift = max_shift
        self.prob = check_probability(prob)
        self.mode = mode
        self.cval = cval
        super().__init__()

    def draw_parameters(self, shape: Sequence[int]) -> ZStackShiftParams:
        """Draw the selection and the shifts for a (B, C, Z, Y, X) batch of ``shape``."""
        check_batch_shape(shape, self)
        selected = self._bernoulli(shape[0], self.prob)
        shifts = torch.randint(
            -self.max_shift, self.max_shift + 1, (shape[0],), generator=self._generator, dtype=torch.long
        )
        return ZStackShiftParams(selected=selected, shifts=shifts)

    def apply(self, data: Tensor, params: ZStackShiftParams) -> Tensor:
        """Shift the selected samples of a (B, C, Z, Y, X) batch; ``data`` itself when none is selected."""
        check_batch_shape(data.shape, self)
        return apply_to_selected(
            data,
            params.selected,
            lambda sub, index: shift_along_z(sub, params.shifts[index], mode=self.mode, cval=self.cval),
        )


class BatchedRandZStackShiftd(SharedDrawMapTransform):
    """Randomly shift each sample of (B, C, Z, Y, X) batches along Z by s ~ U{-max_shift, ..., max_shift} slices.

    Each sample is selected with probability ``prob``; every key of the sample gets the same
    shift. See :func:`shift_along_z` for the direction and the fill modes.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the batched tensors to shift.
    max_shift : int
        Largest shift in slices. Default 3.
    prob : float
        Probability of shifting one sample. Default 0.1.
    mode : str
        Fill of the vacated slices: "constant" (default), "edge", "wrap" or "reflect".
    cval : float
        Fill value of the "constant" mode. Default 0.0.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self,
        keys: Keys,
        max_shift: int = 3,
        prob: float = 0.1,
        mode: str = "constant",
        cval: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BatchedRandZStackShift(max_shift=max_shift, prob=prob, mode=mode, cval=cval)
