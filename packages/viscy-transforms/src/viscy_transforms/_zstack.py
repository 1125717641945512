"""Random integer shift of batched volumes along Z, drawn per sample."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from torch import Tensor

from viscy_transforms._mapping import RandomMapTransform
from viscy_transforms._random import TorchRandomizable, apply_to_selected, check_probability

__all__ = ["BatchedRandZStackShiftd", "shift_along_z"]

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


class BatchedRandZStackShiftd(TorchRandomizable, RandomMapTransform):
    """Randomly shift each sample of (B, C, Z, Y, X) batches along Z by s ~ U{-max_shift, ..., max_shift} slices.

    Each sample is selected with probability ``prob``; every key of the sample gets the same
    shift. See :func:`shift_along_z` for the direction and the fill modes.

    Parameters
    ----------
    keys : Hashable | Sequence[Hashable]
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

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable],
        max_shift: int = 3,
        prob: float = 0.1,
        mode: str = "constant",
        cval: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not isinstance(max_shift, int) or max_shift < 0:
            raise ValueError(f"max_shift must be a non-negative int, got {max_shift!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.max_shift = max_shift
        self.prob = check_probability(prob)
        self.mode = mode
        self.cval = cval
        self._selected = torch.zeros(0, dtype=torch.bool)
        self._shifts = torch.zeros(0, dtype=torch.long)
        self._init_random_state()

    def randomize(self, data: Tensor) -> None:
        """Draw the selection and the shifts for a batch like ``data``."""
        self._selected = self._bernoulli(data.shape[0], self.prob)
        self._shifts = torch.randint(
            -self.max_shift, self.max_shift + 1, (data.shape[0],), generator=self._generator, dtype=torch.long
        )

    def apply(self, data: Tensor) -> Tensor:
        """Shift the selected samples of one key's (B, C, Z, Y, X) batch."""
        if data.ndim != 5:
            raise ValueError(f"{type(self).__name__} expects (B, C, Z, Y, X) data, got shape {tuple(data.shape)}")
        return apply_to_selected(
            data,
            self._selected,
            lambda sub, index: shift_along_z(sub, self._shifts[index], mode=self.mode, cval=self.cval),
        )
