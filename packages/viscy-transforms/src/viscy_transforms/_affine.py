"""Random 3D affine transforms of batched volumes, one geometry per sample shared by all keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import torch
import torch.nn.functional as F
from torch import Tensor

from viscy_transforms._mapping import Keys, SharedDrawMapTransform
from viscy_transforms._random import (
    RandomTransform,
    apply_to_selected,
    check_batch_shape,
    check_interval,
    check_probability,
)

__all__ = ["AffineParams", "BatchedRandAffine", "BatchedRandAffined"]

_MODES = ("bilinear", "nearest")

RangeSpec = Sequence[tuple[float, float] | float] | float | None


def _symmetric_or_pair(value: tuple[float, float] | float, name: str) -> tuple[float, float]:
    if isinstance(value, Real):
        return -abs(float(value)), abs(float(value))
    return check_interval(value, name)


def _per_axis_ranges(value: RangeSpec, name: str, counts: tuple[int, ...], size: int, forms: str) -> Tensor:
    """Ranges as a (size, 2) tensor of (min, max): None is all zeros, a scalar v is (-|v|, |v|) everywhere.

    A sequence of one of ``counts`` entries gives one scalar or (min, max) pair per entry; a sequence
    shorter than ``size`` fills the first entries and leaves the others at zero.
    """
    ranges = torch.zeros(size, 2, dtype=torch.float64)
    if value is None:
        return ranges
    if isinstance(value, Real):
        ranges[:, 0], ranges[:, 1] = _symmetric_or_pair(value, name)
        return ranges
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) not in counts:
        raise ValueError(f"{name} must be {forms}; got {value!r}")
    for entry, item in enumerate(value):
        ranges[entry] = torch.tensor(_symmetric_or_pair(item, f"{name}[{entry}]"), dtype=torch.float64)
    return ranges


def _scale_ranges(scale_range: RangeSpec) -> tuple[Tensor, bool]:
    """Scale ranges as a (3, 2) ZYX tensor, and whether one isotropic factor is drawn per sample."""
    forms = "None, a flat (min, max) pair (one isotropic factor) or three (min, max) pairs in ZYX order"
    if scale_range is None:
        return torch.ones(3, 2, dtype=torch.float64), False
    if isinstance(scale_range, Sequence) and len(scale_range) == 2 and all(isinstance(v, Real) for v in scale_range):
        ranges = torch.tensor([check_interval(scale_range, "scale_range")] * 3, dtype=torch.float64)
        isotropic = True
    elif (
        isinstance(scale_range, Sequence)
        and len(scale_range) == 3
        and all(isinstance(v, Sequence) and not isinstance(v, str) for v in scale_range)
    ):
        ranges = torch.tensor([check_interval(v, f"scale_range[{i}]") for i, v in enumerate(scale_range)])
        ranges = ranges.to(torch.float64)
        isotropic = False
    else:
        raise ValueError(f"scale_range must be {forms}; got {scale_range!r}")
    if bool((ranges <= 0).any()):
        raise ValueError(f"scale factors must be positive, got scale_range={scale_range!r}")
    return ranges, isotropic


def _plane_rotation(angle: Tensor, first: int, second: int) -> Tensor:
    rotation = torch.eye(3, dtype=angle.dtype).repeat(angle.shape[0], 1, 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation[:, first, first] = cos
    rotation[:, first, second] = -sin
    rotation[:, second, first] = sin
    rotation[:, second, second] = cos
    return rotation


def affine_matrices(angles: Tensor, shears: Tensor, scales: Tensor) -> Tensor:
    """Linear part of the forward affine, in voxel units and ZYX order.

    Parameters
    ----------
    angles : Tensor
        Shape (N, 3): rotation about Z (in the YX plane), about Y and about X, in radians.
    shears : Tensor
        Shape (N, 6): shear angles in radians for the facets (zy, zx, yz, yx, xz, xy), in MONAI's
        order; facet ``ab`` adds ``tan(angle) * b`` to coordinate ``a``.
    scales : Tensor
        Shape (N, 3): scale factors along Z, Y, X.

    Returns
    -------
    Tensor
        Shape (N, 3, 3): ``rotation @ shear @ scale``, with ``rotation = R_z @ R_y @ R_x``.
    """
    rotation = _plane_rotation(angles[:, 0], 1, 2) @ _plane_rotation(angles[:, 1], 0, 2)
    rotation = rotation @ _plane_rotation(angles[:, 2], 0, 1)
    shear = torch.eye(3, dtype=shears.dtype).repeat(shears.shape[0], 1, 1)
    factors = torch.tan(shears)
    for facet, (row, column) in enumerate(((0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1))):
        shear[:, row, column] = factors[:, facet]
    return rotation @ shear @ torch.diag_embed(scales)


def sampling_theta(linear: Tensor, translation: Tensor, spatial_shape: Sequence[int]) -> Tensor:
    """``affine_grid`` theta (output to input, normalized XYZ, ``align_corners=False``) of a forward affine.

    The forward affine maps an input voxel ``p`` (ZYX, relative to the volume centre) to
    ``linear @ p + translation``.

    Parameters
    ----------
    linear : Tensor
        Shape (N, 3, 3), voxel units, ZYX.
    translation : Tensor
        Shape (N, 3), voxels, ZYX.
    spatial_shape : Sequence[int]
        (Z, Y, X) of the volume.

    Returns
    -------
    Tensor
        Shape (N, 3, 4), float64.
    """
    half_size = torch.tensor(spatial_shape, dtype=torch.float64) / 2
    inverse = torch.linalg.inv(linear)
    normalized = inverse * half_size.reshape(1, 1, 3) / half_size.reshape(1, 3, 1)
    offset = -(inverse @ translation.unsqueeze(2)).squeeze(2) / half_size
    return torch.cat([normalized.flip(1, 2), offset.flip(1).unsqueeze(2)], dim=2)


@dataclass(frozen=True, eq=False)
class AffineParams:
    """One draw of :class:`BatchedRandAffine`.

    ``selected`` (B,) says which samples are transformed; ``linear`` (B, 3, 3) is each sample's
    forward linear map in voxel units and ZYX order (see :func:`affine_matrices`), and
    ``translation`` (B, 3) its translation as a fraction of the image size along Z, Y, X.
    """

    selected: Tensor
    linear: Tensor
    translation: Tensor


class BatchedRandAffine(RandomTransform[AffineParams]):
    """Array version of :class:`BatchedRandAffined`: a random affine for each sample of a (B, C, Z, Y, X) batch.

    Each sample is selected with probability ``prob`` and gets its own affine, about the volume
    centre in voxel units; the samples that are not selected are returned untouched.

    Parameters
    ----------
    prob, rotate_range, shear_range, translate_range, scale_range, mode
        As in :class:`BatchedRandAffined`, which documents the units and axis order of every range.
    """

    def __init__(
        self,
        prob: float = 0.1,
        rotate_range: RangeSpec = None,
        shear_range: RangeSpec = None,
        translate_range: RangeSpec = None,
        scale_range: tuple[float, float] | Sequence[tuple[float, float]] | None = None,
        mode: str = "bilinear",
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.prob = check_probability(prob)
        self.mode = mode
        axis_forms = "None, a number, or 3 numbers or (min, max) pairs in ZYX order"
        self._rotate = _per_axis_ranges(rotate_range, "rotate_range", (3,), 3, axis_forms)
        self._shear = _per_axis_ranges(
            shear_range, "shear_range", (3, 6), 6, "None, a number, or 3 or 6 numbers or (min, max) pairs"
        )
        self._translate = _per_axis_ranges(translate_range, "translate_range", (3,), 3, axis_forms)
        self._scale, self._isotropic_scale = _scale_ranges(scale_range)
        super().__init__()

    def _draw_ranges(self, ranges: Tensor, batch_size: int) -> Tensor:
        return self._uniform(ranges[:, 0], ranges[:, 1], (batch_size, ranges.shape[0]))

    def draw_parameters(self, shape: Sequence[int]) -> AffineParams:
        """Draw the selection and one affine per sample for a (B, C, Z, Y, X) batch of ``shape``."""
        check_batch_shape(shape, self)
        batch_size = shape[0]
        selected = self._bernoulli(batch_size, self.prob)
        angles = self._draw_ranges(self._rotate, batch_size)
        shears = self._draw_ranges(self._shear, batch_size)
        translation = self._draw_ranges(self._translate, batch_size)
        if self._isotropic_scale:
            scales = self._uniform(self._scale[0, 0], self._scale[0, 1], batch_size).unsqueeze(1).expand(-1, 3)
        else:
            scales = self._draw_ranges(self._scale, batch_size)
        return AffineParams(selected=selected, linear=affine_matrices(angles, shears, scales), translation=translation)

    def apply(self, data: Tensor, params: AffineParams) -> Tensor:
        """Resample the selected samples of a (B, C, Z, Y, X) batch with their affines."""
        check_batch_shape(data.shape, self)
        spatial_shape = tuple(data.shape[2:])

        def resample(sub: Tensor, index: Tensor) -> Tensor:
            translation = params.translation[index] * torch.tensor(spatial_shape, dtype=torch.float64)
            theta = sampling_theta(params.linear[index], translation, spatial_shape)
            grid = F.affine_grid(theta.to(device=sub.device, dtype=sub.dtype), list(sub.shape), align_corners=False)
            return F.grid_sample(sub, grid, mode=self.mode, padding_mode="zeros", align_corners=False)

        return apply_to_selected(data, params.selected, resample)


class BatchedRandAffined(SharedDrawMapTransform):
    """Randomly rotate, shear, scale and translate each sample of (B, C, Z, Y, X) batches.

    Each sample is selected with probability ``prob`` and gets its own random affine; every key
    of the sample gets the very same affine, so source and target stay aligned. The affine acts
    about the volume centre in voxel units (so rotations stay rigid on anisotropic volumes):
    scale first, then shear, then rotation, then translation. Resampling uses
    ``torch.nn.functional.grid_sample`` with zero padding and ``align_corners=False``; the
    samples that are not selected are returned untouched. Kornia is not needed for this.

    Every range is given per axis in (Z, Y, X) order; an entry is a number v, meaning U(-v, v),
    or a (min, max) pair; a single number applies U(-v, v) to every axis.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the batched tensors to transform; they must share the batch size.
    prob : float
        Probability of transforming one sample. Default 0.1.
    rotate_range : Sequence[tuple[float, float] | float] | float | None
        Rotation angles in **radians** (as in MONAI ``RandAffine``) about Z (an in-plane YX
        rotation), Y and X. A rotation of +pi/2 about Z equals ``torch.rot90(x, 1, dims=(-2, -1))``.
        Default None (no rotation).
    shear_range : Sequence[tuple[float, float] | float] | float | None
        Shear **angles in radians**; the shear factor is ``tan(angle)``, which for small angles
        equals MONAI's shear factor. Six entries for the facets (zy, zx, yz, yx, xz, xy), MONAI's
        order, where facet ``ab`` shifts coordinate ``a`` in proportion to ``b``; three entries
        set (zy, zx, yz) and leave the others at zero, as MONAI does. Default None (no shear).
    translate_range : Sequence[tuple[float, float] | float] | float | None
        Translation as a **fraction of the image size** along Z, Y, X. Default None.
    scale_range : tuple[float, float] | Sequence[tuple[float, float]] | None
        Absolute scale factors (1 means unchanged): a flat (min, max) pair draws one isotropic
        factor per sample; three (min, max) pairs draw one factor per axis (ZYX). Default None.
    mode : str
        Interpolation, "bilinear" (trilinear, default) or "nearest".
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    def __init__(
        self,
        keys: Keys,
        prob: float = 0.1,
        rotate_range: RangeSpec = None,
        shear_range: RangeSpec = None,
        translate_range: RangeSpec = None,
        scale_range: tuple[float, float] | Sequence[tuple[float, float]] | None = None,
        mode: str = "bilinear",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BatchedRandAffine(
            prob=prob,
            rotate_range=rotate_range,
            shear_range=shear_range,
            translate_range=translate_range,
            scale_range=scale_range,
            mode=mode,
        )
