"""Center crops of batched (B, C, [Z,] Y, X) tensors and random crops of batched (B, C, Z, Y, X) tensors."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from monai.transforms import Transform
from torch import Tensor

from viscy_transforms._mapping import ArrayMapTransform, SharedDrawMapTransform
from viscy_transforms._random import TorchRandomizable

__all__ = [
    "BatchedCenterSpatialCrop",
    "BatchedCenterSpatialCropd",
    "BatchedRandSpatialCrop",
    "BatchedRandSpatialCropd",
]


_BATCH_LAYOUTS = {4: "(B, C, Y, X)", 5: "(B, C, Z, Y, X)"}


def _check_batched(data: Tensor, transform: object, ndims: tuple[int, ...] = (4, 5)) -> None:
    """Raise ValueError naming the accepted batch layouts and the shape received."""
    if data.ndim not in ndims:
        expected = " or ".join(_BATCH_LAYOUTS[n] for n in ndims)
        raise ValueError(f"{type(transform).__name__} expects a batch shaped {expected}, got shape {tuple(data.shape)}")


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
        _check_batched(data, self)
        spatial_shape = tuple(data.shape[2:])
        roi = _roi_for(self.roi_size, spatial_shape)
        starts = center_crop_starts(self.roi_size, spatial_shape)
        return data[(..., *(slice(s, s + r) for s, r in zip(starts, roi, strict=True)))]


class BatchedCenterSpatialCropd(ArrayMapTransform):
    """Dictionary version of :class:`BatchedCenterSpatialCrop`; other entries pass through.

    Parameters
    ----------
    keys : Hashable | Sequence[Hashable]
        Keys of the batched tensors to crop.
    roi_size : Sequence[int] | int
        Window size per spatial dim.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    def __init__(
        self, keys: Hashable | Sequence[Hashable], roi_size: Sequence[int] | int, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BatchedCenterSpatialCrop(roi_size)


class BatchedRandSpatialCrop(TorchRandomizable, Transform):
    """Crop a window of fixed size at a random position drawn independently for every sample.

    Works on (B, C, Z, Y, X) batches only, like the reference; other shapes raise ValueError.

    Parameters
    ----------
    roi_size : Sequence[int] | int
        Window size per spatial dim (ZYX); an int applies to every dim, a non-positive entry
        means the full size. Clamped to the image size.
    max_roi_size : Sequence[int] | int | None
        Only meaningful with ``random_size``, which batched crops do not support (all samples of a
        batch must keep one size); accepted for signature compatibility with MONAI.
    random_center : bool
        Random window positions (default). When False every sample is cropped at the center,
        exactly like :class:`BatchedCenterSpatialCrop`.
    random_size : bool
        Must be False: a batch cannot hold windows of different sizes.
    """

    def __init__(
        self,
        roi_size: Sequence[int] | int,
        max_roi_size: Sequence[int] | int | None = None,
        random_center: bool = True,
        random_size: bool = False,
    ) -> None:
        if random_size:
            raise ValueError("Batched transform does not support random size: pass random_size=False")
        self.roi_size = _check_roi_size(roi_size)
        self.max_roi_size = max_roi_size
        self.random_center = random_center
        self.random_size = random_size
        self._starts: Tensor | None = None
        self._roi: tuple[int, ...] | None = None
        self._init_random_state()

    def randomize(self, data: Tensor) -> None:
        """Draw one window start per sample, shape (B, 3), for a (B, C, Z, Y, X) batch like ``data``."""
        _check_batched(data, self, ndims=(5,))
        spatial_shape = tuple(data.shape[2:])
        self._roi = _roi_for(self.roi_size, spatial_shape)
        batch_size = data.shape[0]
        if self.random_center:
            margins = torch.tensor([n - r + 1 for n, r in zip(spatial_shape, self._roi, strict=True)])
            fractions = torch.rand((batch_size, len(spatial_shape)), generator=self._generator, dtype=torch.float64)
            self._starts = (fractions * margins).long()
        else:
            starts = center_crop_starts(self.roi_size, spatial_shape)
            self._starts = torch.tensor(starts).expand(batch_size, -1)

    @torch.no_grad()
    def __call__(self, data: Tensor, randomize: bool = True) -> Tensor:
        """Crop a (B, C, Z, Y, X) batch.

        Parameters
        ----------
        data : Tensor
            The batch.
        randomize : bool
            Draw new window positions (default) or reuse the previous ones.

        Returns
        -------
        Tensor
            A new contiguous tensor of shape (B, C, *roi).

        Raises
        ------
        ValueError
            If ``data`` is not 5D.
        """
        _check_batched(data, self, ndims=(5,))
        if randomize:
            self.randomize(data)
        if self._starts is None or self._roi is None:
            raise RuntimeError(f"{type(self).__name__} has no window positions yet: call it with randomize=True first")
        if self._starts.shape != (data.shape[0], data.ndim - 2):
            raise ValueError(
                f"window positions were drawn for {self._starts.shape[0]} samples with "
                f"{self._starts.shape[1]} spatial dims, got data of shape {tuple(data.shape)}"
            )
        windows = data
        for dim, size in enumerate(self._roi):
            windows = windows.unfold(2 + dim, size, 1)
        starts = self._starts.to(data.device)
        batch = torch.arange(data.shape[0], device=data.device)
        # advanced indices around the channel slice move the batch dim first: (B, C, *roi)
        return windows[(batch, slice(None), *starts.unbind(1))].contiguous()


class BatchedRandSpatialCropd(SharedDrawMapTransform):
    """Dictionary version of :class:`BatchedRandSpatialCrop`: every key gets the same windows.

    Parameters
    ----------
    keys : Hashable | Sequence[Hashable]
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

    shared_shape = ((slice(0, 1), "batch sizes"), (slice(2, None), "spatial shapes"))

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable],
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
