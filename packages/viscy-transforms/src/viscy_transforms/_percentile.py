"""Per-sample percentile intensity scaling of batches."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from monai.transforms import ScaleIntensityRangePercentiles
from numpy.typing import DTypeLike
from torch import Tensor

from viscy_transforms._mapping import ArrayMapTransform, Keys
from viscy_transforms._random import check_kept_dtype

__all__ = ["BatchedScaleIntensityRangePercentiles", "BatchedScaleIntensityRangePercentilesd"]


def batched_quantile(values: Tensor, q: float) -> Tensor:
    """Quantile along the last dim with linear interpolation (``torch.quantile``'s default).

    Uses ``kthvalue``, which has no limit on the input size (``torch.quantile`` refuses inputs
    above 2**24 elements).

    Parameters
    ----------
    values : Tensor
        Shape (..., N).
    q : float
        Quantile in [0, 1].

    Returns
    -------
    Tensor
        Shape (...).
    """
    position = q * (values.shape[-1] - 1)
    below = int(np.floor(position))
    above = min(below + 1, values.shape[-1] - 1)
    low = values.kthvalue(below + 1, dim=-1).values
    weight = position - below
    if weight == 0:
        return low
    high = values.kthvalue(above + 1, dim=-1).values
    return low + weight * (high - low)


class BatchedScaleIntensityRangePercentiles(ScaleIntensityRangePercentiles):
    """MONAI ``ScaleIntensityRangePercentiles`` applied to every sample of a batch independently.

    For each sample (or each sample and channel with ``channel_wise``), the ``lower`` and
    ``upper`` percentiles of its values are mapped to ``b_min`` and ``b_max``, with MONAI's
    ``relative`` and ``clip`` semantics. A sample (or channel) whose two percentiles are equal
    cannot be scaled: it is only shifted, ``x - a_min`` (``+ b_min`` when given), as MONAI does,
    and a warning counts such samples; the other samples are scaled normally.

    Works on batches of any shape with the batch first, e.g. (B, C, Y, X) and (B, C, Z, Y, X).

    Parameters
    ----------
    lower, upper : float
        Percentiles in [0, 100].
    b_min, b_max : float | None
        Target range; None leaves the values at the [0, 1] normalization (see MONAI).
    clip : bool
        Clip the output to [b_min, b_max]. Default False.
    relative : bool
        Scale the target range by the percentiles (MONAI's relative mode). Default False.
    channel_wise : bool
        Percentiles per (sample, channel) instead of per sample. Default False.
    dtype : DTypeLike
        Accepted for reference configs; only the default float32 (or None) is accepted:
        floating-point inputs keep their dtype and other inputs become float32 (cast the data
        before this transform to change it).

    Raises
    ------
    ValueError
        If ``relative`` lacks ``b_min`` or ``b_max``, or ``dtype`` is neither float32 nor None.
    """

    def __init__(
        self,
        lower: float,
        upper: float,
        b_min: float | None,
        b_max: float | None,
        clip: bool = False,
        relative: bool = False,
        channel_wise: bool = False,
        dtype: DTypeLike = np.float32,
    ) -> None:
        check_kept_dtype(dtype, type(self).__name__)
        super().__init__(
            lower, upper, b_min, b_max, clip=clip, relative=relative, channel_wise=channel_wise, dtype=dtype
        )
        if relative and (b_min is None or b_max is None):
            raise ValueError(f"relative=True needs both b_min and b_max, got b_min={b_min!r}, b_max={b_max!r}")

    def __call__(self, img: Tensor) -> Tensor:
        """Scale a batch.

        Parameters
        ----------
        img : Tensor
            Batch with at least 2 dims (batch and values), at least 3 with ``channel_wise``.

        Returns
        -------
        Tensor
            The scaled batch, same shape and device.
        """
        leading = 2 if self.channel_wise else 1
        if img.ndim <= leading:
            raise ValueError(f"{type(self).__name__} needs a batch with more than {leading} dims, got {img.ndim}")
        data = img if img.is_floating_point() else img.float()
        values = data.reshape(*data.shape[:leading], -1)
        compute = values if values.dtype == torch.float64 else values.float()
        a_min = batched_quantile(compute, self.lower / 100.0)
        a_max = batched_quantile(compute, self.upper / 100.0)
        b_min, b_max = self.b_min, self.b_max
        if self.relative:
            b_min = (self.b_max - self.b_min) * (self.lower / 100.0) + self.b_min
            b_max = (self.b_max - self.b_min) * (self.upper / 100.0) + self.b_min
        stat_shape = a_min.shape + (1,) * (data.ndim - leading)
        a_min = a_min.reshape(stat_shape).to(data.dtype)
        a_max = a_max.reshape(stat_shape).to(data.dtype)
        value_range = a_max - a_min
        constant = value_range == 0
        shifted = data - a_min
        out = shifted / torch.where(constant, torch.ones_like(value_range), value_range)
        if b_min is not None and b_max is not None:
            out = out * (b_max - b_min) + b_min
        if self.clip and (b_min is not None or b_max is not None):
            out = out.clamp(min=b_min, max=b_max)
        if bool(constant.any()):
            warnings.warn(
                f"{int(constant.sum())} of {constant.numel()} {'channels' if self.channel_wise else 'samples'} have "
                f"equal {self.lower}th and {self.upper}th percentiles; they are shifted by the lower percentile, "
                "not scaled",
                stacklevel=2,
            )
            out = torch.where(constant, shifted if b_min is None else shifted + b_min, out)
        return out


class BatchedScaleIntensityRangePercentilesd(ArrayMapTransform):
    """Dictionary version of :class:`BatchedScaleIntensityRangePercentiles`; each key is scaled on its own values.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the batched tensors to scale.
    lower, upper : float
        Percentiles in [0, 100].
    b_min, b_max : float | None
        Target range.
    clip : bool
        Clip the output to [b_min, b_max]. Default False.
    relative : bool
        MONAI's relative mode. Default False.
    channel_wise : bool
        Percentiles per (sample, channel). Default False.
    dtype : DTypeLike
        Accepted for reference configs; only the default float32 (or None) is accepted; see
        :class:`BatchedScaleIntensityRangePercentiles`.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    def __init__(
        self,
        keys: Keys,
        lower: float,
        upper: float,
        b_min: float | None,
        b_max: float | None,
        clip: bool = False,
        relative: bool = False,
        channel_wise: bool = False,
        dtype: DTypeLike = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BatchedScaleIntensityRangePercentiles(
            lower, upper, b_min, b_max, clip=clip, relative=relative, channel_wise=channel_wise, dtype=dtype
        )
