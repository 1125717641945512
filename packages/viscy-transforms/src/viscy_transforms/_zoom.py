"""Deterministic zoom of batches with ``torch.nn.functional.interpolate``."""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

import torch.nn.functional as F
from monai.transforms import Transform
from torch import Tensor

from viscy_transforms._mapping import ArrayMapTransform, Keys
from viscy_transforms.kinds import TransformKind

__all__ = ["BatchedZoom", "BatchedZoomd"]

InterpolationMode = Literal["nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area"]

_MODES = get_args(InterpolationMode)


class BatchedZoom(Transform):
    """Zoom a batch by a fixed factor (a thin wrapper of ``torch.nn.functional.interpolate``).

    Parameters
    ----------
    scale_factor : float | tuple[float, float, float]
        Zoom factor, one for all spatial dims or one per dim (ZYX).
    mode : str
        Interpolation: "nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear"
        or "area" (it must suit the data's number of spatial dims, as in ``interpolate``).
    align_corners : bool | None
        See ``torch.nn.functional.interpolate``. Default None.
    recompute_scale_factor : bool | None
        See ``torch.nn.functional.interpolate``. Default None.
    antialias : bool
        See ``torch.nn.functional.interpolate``. Default False.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self,
        scale_factor: float | tuple[float, float, float],
        mode: InterpolationMode,
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
        antialias: bool = False,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.scale_factor = scale_factor
        self.mode = mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor
        self.antialias = antialias

    def __call__(self, sample: Tensor) -> Tensor:
        """Zoom a (B, C, *spatial) batch.

        Parameters
        ----------
        sample : Tensor
            The batch.

        Returns
        -------
        Tensor
            The zoomed batch.
        """
        return F.interpolate(
            sample,
            scale_factor=self.scale_factor,
            mode=self.mode,
            align_corners=self.align_corners,
            recompute_scale_factor=self.recompute_scale_factor,
            antialias=self.antialias,
        )


class BatchedZoomd(ArrayMapTransform):
    """Dictionary version of :class:`BatchedZoom`; every key must be present.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the batched tensors to zoom.
    scale_factor : float | tuple[float, float, float]
        Zoom factor.
    mode : str
        Interpolation mode, see :class:`BatchedZoom`.
    align_corners, recompute_scale_factor, antialias
        See :class:`BatchedZoom`.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self,
        keys: Keys,
        scale_factor: float | tuple[float, float, float],
        mode: InterpolationMode,
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
        antialias: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys=False)
        self.transform = BatchedZoom(
            scale_factor=scale_factor,
            mode=mode,
            align_corners=align_corners,
            recompute_scale_factor=recompute_scale_factor,
            antialias=antialias,
        )
