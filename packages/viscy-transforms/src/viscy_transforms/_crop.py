"""Center crops of batched (B, C, [Z,] Y, X) tensors and random crops of batched (B, C, Z, Y, X) tensors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from monai.transforms import Transform
from torch import Tensor

from viscy_transforms._mapping import ArrayMapTransform, Keys, SharedDrawMapTransform
from viscy_transforms._random import (
    BATCH_AND_SPATIAL_SHAPES,
    RandomTransform,
    check_batch_shape,
    check_drawn_batch_size,
)
from viscy_transforms.kinds import TransformKind

__all__ = [
    "BatchedCenterSpatialCrop",
    "BatchedCenterSpatialCropd",
    "BatchedRandSpatialCrop",
    "BatchedRandSpatialCropd",
    "CropParams",
]


def _check_roi_size(roi_size: Sequence[int] | int) -> Sequence[int] | int:
    values = [roi_size] if isinstance(roi_size, int) else list(roi_size)
    if not values or not all(isinstance(v, int) for v in values):
        raise ValueError(f"roi_size must be an int or a sequence of ints, got {roi_size!r}")
    return roi_size if isinstance(roi_size, int) else tuple(roi_size)


def _roi_for(roi_size: Sequence[int] | int, spatial_shape: Sequence[int]) -> tuple[int, ...]:
    """ROI size per spatial dim: an int applies to every dim, a non-positive entry means the full size.

    The ROI is clamped to the image size, as MONAI does.
    """
    roi = (roi_size,) * len(spatial_shape) if isinstance(roi_size, int) else tuple(roi_size)
    if len(roi) != len(spatial_shape):
        raise ValueError(f"roi_size {roi_size!r} has {len(roi)} entries but the data has spatial shape {spatial_shape}")
    return tuple(min(r, n) if r > 0 else n for r, n in zip(roi, spatial_shape, strict=True))


def center_crop_starts(roi_size: Sequence[int] | int, spatial_shape: Sequence[int]) -> tuple[int, ...]:
    """Start of the centered window, identical to MONAI ``CenterSpatialCrop``: ``max(n // 2 - roi // 2, 0)``."""
    roi = _roi_for(roi_size, spatial_shape)
    return tuple(max(n // 2 - r // 2, 0) for r, n in zip(roi, spatial_shape, strict=True))


class BatchedCenterSpatialCrop(Transform):
    """Crop the same centered window from every sample of a batch.

    Gives the same result as MONAI ``CenterSpatialCrop`` applied to each sample, including odd
    sizes, a ROI larger than the image (no crop along that dim) and non-positive ROI entries
    (full size along that dim).

    Parameters
    ----------
    roi_size : Sequence[int] | int
        Window size per spatial dim (ZYX or YX); an int applies to every dim.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = True

    def __init__(self, roi_size: Sequence[int] | int) -> None:
        self.roi_size = _check_roi_size(roi_size)

    def __call__(self, data: Tensor) -> Tensor:
        """Crop a (B, C, Z, Y, X) or (B, C, Y, X) batch; returns a view of ``data``.

        Parameters
        ----------
        data : Tensor
            The batch.

        Returns
        -------
        Tensor
            The cropped batch.
        """
        check_batch_shape(data.shape, self, ndims=(4, 5))
        spatial_shape = tuple(data.shape[2:])
        roi = _roi_for(self.roi_size, spatial_shape)
        starts = center_crop_starts(self.roi_size, spatial_shape)
        return data[(..., *(slice(s, s + r) for s, r in zip(starts, roi, strict=True)))]


class BatchedCenterSpatialCropd(ArrayMapTransform):
    """Dictionary version of :class:`BatchedCenterSpatialCrop`; other entries pass through.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the batched tensors to crop.
    roi_size : Sequence[int] | int
        Window size per spatial dim.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = True

    def __init__(self, keys: Keys, roi_size: Sequence[int] | int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BatchedCenterSpatialCrop(roi_size)

    @property
    def centre_crop_size(self) -> Sequence[int] | int:
        """The crop's size, as given; a pipeline fuses the crop into a random affine that precedes it."""
        return self.transform.roi_size


@dataclass(frozen=True, eq=False)
class CropParams:
    """One draw of :class:`BatchedRandSpatialCrop`: the window size (Z, Y, X) and each sample's window start (B, 3)."""

    roi: tuple[int, ...]
    starts: Tensor


class BatchedRandSpatialCrop(RandomTransform[CropParams]):
    """Crop a window of fixed size at a random position drawn independently for every sample.

    Works on (B, C, Z, Y, X) batches only, like the reference; other shapes raise ValueError.

    Parameters
    ----------
    roi_size : Sequence[int] | int
        Window size per spatial dim (ZYX); an int applies to every dim, a non-positive entry
        means the full size. Clamped to the image size.
    max_roi_size : Sequence[int] | int | None
        Accepted for reference configs; only the default None is accepted: it bounds MONAI's
        ``random_size``, which batched crops do not support (all samples of a batch keep one
        size, ``roi_size``).
    random_center : bool
        Random window positions (default). When False every sample is cropped at the center,
        exactly like :class:`BatchedCenterSpatialCrop`.
    random_size : bool
        Must be False: a batch cannot hold windows of different sizes.

    Raises
    ------
    ValueError
        If ``random_size`` is True or ``max_roi_size`` is given.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = True

    shared_shape = BATCH_AND_SPATIAL_SHAPES

    def __init__(
        self,
        roi_size: Sequence[int] | int,
        max_roi_size: Sequence[int] | int | None = None,
        random_center: bool = True,
        random_size: bool = False,
    ) -> None:
        if random_size:
            raise ValueError("Batched transform does not support random size: pass random_size=False")
        if max_roi_size is not None:
            raise ValueError(
                f"max_roi_size={max_roi_size!r} is not supported: it bounds random_size, which batched crops do not "
                "support; leave max_roi_size unset and give the window size as roi_size."
            )
        self.roi_size = _check_roi_size(roi_size)
        self.random_center = random_center
        self.random_size = random_size
        super().__init__()

    def draw_parameters(self, shape: Sequence[int]) -> CropParams:
        """Draw one window start per sample, shape (B, 3), for a (B, C, Z, Y, X) batch of ``shape``."""
        check_batch_shape(shape, self)
        spatial_shape = tuple(shape[2:])
        roi = _roi_for(self.roi_size, spatial_shape)
        if self.random_center:
            margins = torch.tensor([n - r + 1 for n, r in zip(spatial_shape, roi, strict=True)])
            fractions = torch.rand((shape[0], len(spatial_shape)), generator=self._generator, dtype=torch.float64)
            starts = (fractions * margins).long()
        else:
            starts = torch.tensor(center_crop_starts(self.roi_size, spatial_shape)).expand(shape[0], -1)
        return CropParams(roi=roi, starts=starts)

    def apply(self, data: Tensor, params: CropParams) -> Tensor:
        """Crop every sample of a (B, C, Z, Y, X) batch at its window; a new contiguous (B, C, *roi) tensor."""
        check_batch_shape(data.shape, self)
        check_drawn_batch_size(params.starts.shape[0], data)
        windows = data
        for dim, size in enumerate(params.roi):
            windows = windows.unfold(2 + dim, size, 1)
        starts = params.starts.to(data.device)
        batch = torch.arange(data.shape[0], device=data.device)
        # advanced indices around the channel slice move the batch dim first: (B, C, *roi)
        return windows[(batch, slice(None), *starts.unbind(1))].contiguous()


class BatchedRandSpatialCropd(SharedDrawMapTransform):
    """Dictionary version of :class:`BatchedRandSpatialCrop`: every key gets the same windows.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the batched (B, C, Z, Y, X) tensors to crop; they must share batch size and spatial shape.
    roi_size : Sequence[int] | int
        Window size per spatial dim.
    max_roi_size : Sequence[int] | int | None
        See :class:`BatchedRandSpatialCrop`.
    random_center : bool
        Random window positions (default) or centered windows.
    random_size : bool
        Must be False.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self,
        keys: Keys,
        roi_size: Sequence[int] | int,
        max_roi_size: Sequence[int] | int | None = None,
        random_center: bool = True,
        random_size: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BatchedRandSpatialCrop(
            roi_size=roi_size, max_roi_size=max_roi_size, random_center=random_center, random_size=random_size
        )
