"""Random 3D affine transforms of batched volumes, one geometry per sample shared by all keys."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from viscy_transforms._crop import BatchedCenterSpatialCrop, center_crop_starts
from viscy_transforms._mapping import Keys, SharedDrawMapTransform
from viscy_transforms._random import (
    RandomTransform,
    apply_to_selected,
    check_batch_shape,
    check_interval,
    check_probability,
)
from viscy_transforms.kinds import TransformKind

__all__ = ["AffineParams", "BatchedRandAffine", "BatchedRandAffined"]

_MODES = ("bilinear", "nearest")
#: the worst-case reach that :meth:`BatchedRandAffine.smallest_read_size` finds is at most this many voxels
#: above the exact one (a certified bound on its search over rotation angles about Y and X)
_REACH_TOLERANCE = 0.01
#: largest (angle cells x shear vertices x output corners) evaluated at once by that search over the rotations
#: about Y and X, which stops refining (and stays conservative, only less tight) when it would exceed it
_REACH_BUDGET = 2**17
#: initial width of an angle cell of that search, in radians
_REACH_CELL = 0.25
#: rounding allowance, in voxels, when a needed read size is an integer up to float error
_SIZE_ROUNDING = 1e-6
#: a translate_range of fractions near 1/2 of the read needs an unbounded read: give up after this many rounds
_READ_ROUNDS = 200

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


def sampling_theta(
    linear: Tensor,
    translation: Tensor,
    spatial_shape: Sequence[int],
    output_shape: Sequence[int] | None = None,
) -> Tensor:
    """``affine_grid`` theta (output to input, normalized XYZ, ``align_corners=False``) of a forward affine.

    The forward affine maps an input voxel ``p`` (ZYX, relative to the volume centre) to
    ``linear @ p + translation``; so the output voxel ``q`` (ZYX, relative to the output's centre)
    samples the input at ``linear^-1 @ (q - translation)``. With ``align_corners=False`` voxel ``i``
    of an axis of size ``n`` sits at ``q = i - (n - 1) / 2`` and at the normalized coordinate
    ``2 q / n``, so ``theta = diag(2 / input) @ linear^-1 @ diag(output / 2)`` with the offset
    ``-diag(2 / input) @ linear^-1 @ translation``.

    Parameters
    ----------
    linear : Tensor
        Shape (N, 3, 3), voxel units, ZYX.
    translation : Tensor
        Shape (N, 3), voxels, ZYX.
    spatial_shape : Sequence[int]
        (Z, Y, X) of the input volume.
    output_shape : Sequence[int] | None
        (Z, Y, X) of the output grid, centred on the input's centre; None (default) is ``spatial_shape``.

    Returns
    -------
    Tensor
        Shape (N, 3, 4), float64.
    """
    half_size = torch.tensor(spatial_shape, dtype=torch.float64) / 2
    half_output = half_size if output_shape is None else torch.tensor(output_shape, dtype=torch.float64) / 2
    inverse = torch.linalg.inv(linear)
    normalized = inverse * half_output.reshape(1, 1, 3) / half_size.reshape(1, 3, 1)
    offset = -(inverse @ translation.unsqueeze(2)).squeeze(2) / half_size
    return torch.cat([normalized.flip(1, 2), offset.flip(1).unsqueeze(2)], dim=2)


def _check_spatial_size(
    spatial_size: Sequence[int] | int | None, name: str = "spatial_size"
) -> tuple[int, int, int] | None:
    if spatial_size is None:
        return None
    size = (spatial_size,) * 3 if isinstance(spatial_size, int) else spatial_size
    if (
        isinstance(size, (str, bytes))
        or not isinstance(size, Sequence)
        or len(size) != 3
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in size)
    ):
        raise ValueError(f"{name} must be None, an int or 3 ints (Z, Y, X), got {spatial_size!r}")
    return tuple(size)


def _output_shape(spatial_size: tuple[int, int, int] | None, input_shape: Sequence[int]) -> tuple[int, ...]:
    """Return the output's (Z, Y, X): ``spatial_size``, its non-positive entries (or None) taking the input's size."""
    if spatial_size is None:
        return tuple(input_shape)
    output = tuple(s if s > 0 else n for s, n in zip(spatial_size, input_shape, strict=True))
    if any(s > n for s, n in zip(output, input_shape, strict=True)):
        raise ValueError(
            f"spatial_size {spatial_size} exceeds the input spatial shape {tuple(input_shape)}: the output is a "
            "centred crop of the input's frame; read at least smallest_read_size(spatial_size)"
        )
    return output


def _crop_centre(output_shape: Sequence[int], input_shape: Sequence[int]) -> Tensor:
    """Return the centre of the centred crop (:func:`center_crop_starts`) from the input's centre: 0 or +-1/2."""
    starts = center_crop_starts(output_shape, input_shape)
    offsets = [s - (n - o) / 2 for s, n, o in zip(starts, input_shape, output_shape, strict=True)]
    return torch.tensor(offsets, dtype=torch.float64)


def _box_corners(low: Tensor, high: Tensor) -> Tensor:
    """Return the 2^d corners, shape (2^d, d), of the box ``[low, high]``."""
    return torch.cartesian_prod(*(torch.stack([lo, hi]) for lo, hi in zip(low, high, strict=True)))


def _read_for(reach: float, size: int) -> int:
    """Return the smallest read, at least ``size`` and of its parity, whose voxel centres reach ``+-reach``."""
    smallest = math.ceil(2 * reach + 1 - _SIZE_ROUNDING)
    return max(size, smallest + (smallest - size) % 2)


def _shear_scale_inverses(shear: Tensor, scales: Tensor) -> Tensor:
    """``(shear @ scale)^-1``, shape (V, 3, 3), at the V distinct vertices of the (6, 2) shear-angle box.

    Raises
    ------
    ValueError
        If a shear of the box folds space (``det(shear) <= 0``).
    """
    vertices = torch.unique(torch.cartesian_prod(*shear), dim=0)
    count = vertices.shape[0]
    forward = affine_matrices(vertices.new_zeros(count, 3), vertices, scales.expand(count, 3))
    if bool((torch.linalg.det(forward) <= 0).any()):
        raise ValueError("shear_range is too large: some shear of the range folds space (non-positive determinant)")
    return torch.linalg.inv(forward)


def _rotations(angles: Tensor) -> Tensor:
    """Return the rotations ``R_z @ R_y @ R_x``, shape (N, 3, 3), of (N, 3) angles, as in :func:`affine_matrices`."""
    count = angles.shape[0]
    return affine_matrices(angles, angles.new_zeros(count, 6), angles.new_ones(count, 3))


def _cos_bounds(low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
    """Return the smallest and largest ``cos`` over each interval ``[low, high]`` (elementwise)."""
    turn = 2 * math.pi
    reaches_one = torch.floor(high / turn) >= torch.ceil(low / turn)
    reaches_minus_one = torch.floor((high - math.pi) / turn) >= torch.ceil((low - math.pi) / turn)
    at_low, at_high = torch.cos(low), torch.cos(high)
    smallest = torch.where(reaches_minus_one, -1.0, torch.minimum(at_low, at_high))
    largest = torch.where(reaches_one, 1.0, torch.maximum(at_low, at_high))
    return smallest, largest


def _reach_at(tilts: Tensor, about_z: Tensor, inverses: Tensor, corners: Tensor) -> Tensor:
    """Return the largest ``|(A^-1 @ y)[axis]|``, shape (C, 3), for C (Y, X) rotation angle pairs ``tilts``.

    Exact over the Z rotation angles ``about_z`` ((min, max), radians), the V shear vertices of
    ``inverses`` (``(shear @ scale)^-1``) and the K ``corners`` ``y``: with ``w`` a row of
    ``inverses @ R_x^T @ R_y^T``, the coordinate ``w @ R_z^T @ y = c0 + rho * cos(angle - phase)``
    spans ``c0 + rho * [min cos, max cos]`` over the Z angles.
    """
    rotations = _rotations(torch.cat([tilts.new_zeros(tilts.shape[0], 1), tilts], dim=1))
    rows = inverses.unsqueeze(0) @ rotations.transpose(1, 2).unsqueeze(1)
    w_z, w_y, w_x = rows[..., 0:1], rows[..., 1:2], rows[..., 2:3]
    z, y, x = corners.T
    constant, along, across = w_z * z, w_y * y + w_x * x, w_y * x - w_x * y
    amplitude, phase = torch.hypot(along, across), torch.atan2(across, along)
    smallest, largest = _cos_bounds(about_z[0] - phase, about_z[1] - phase)
    extremes = torch.maximum((constant + amplitude * smallest).abs(), (constant + amplitude * largest).abs())
    return extremes.amax(dim=(1, 3))


def _tilt_slopes(inverses: Tensor, about_x: Tensor, radius: float) -> Tensor:
    """Return bounds (3 axes, 2) on the slope of each sampled coordinate in the Y and in the X rotation angle.

    ``d/dx (w^T R_x^T u) = -(R_x w) . (G_x u)``, where the generator ``G_x`` keeps the ZY plane and
    ``R_x`` preserves ZY norms: at most ``|w_zy| |y|``. Likewise the slope in the Y angle is at most
    ``|(R_x w)_zx| |y|``: ``|w| |y|`` when the X angle varies.
    """
    about_x_slope = inverses[..., :2].norm(dim=-1).amax(0)
    if about_x[1] > about_x[0]:
        about_y_slope = inverses.norm(dim=-1).amax(0)
    else:
        tilt = _rotations(torch.cat([about_x.new_zeros(2), about_x[:1]]).unsqueeze(0))[0]
        about_y_slope = (inverses @ tilt.T)[..., [0, 2]].norm(dim=-1).amax(0)
    return torch.stack([about_y_slope, about_x_slope], dim=1) * radius


def _split(centres: Tensor, half: Tensor, varying: Tensor) -> Tensor:
    """Return the centres of the 2^k halves (k varying axes) of every cell, cells of half-widths ``half``."""
    steps = (torch.stack([-h, h]) / 2 if v else h.new_zeros(1) for h, v in zip(half, varying, strict=True))
    offsets = torch.cartesian_prod(*steps).reshape(-1, centres.shape[1])
    return (centres.unsqueeze(1) + offsets.unsqueeze(0)).reshape(-1, centres.shape[1])


def _worst_case_reach(
    rotate: Tensor, shear: Tensor, scale_min: Tensor, corners: Tensor, output: Sequence[int] | None = None
) -> Tensor:
    """Return an upper bound on ``|(A^-1 @ y)[axis]|`` over every affine ``A`` of the ranges and ``y`` in ``corners``.

    ``A = rotation @ shear @ scale`` as in :func:`affine_matrices`, so ``A^-1 = scale^-1 @ shear^-1 @
    R_x^T @ R_y^T @ R_z^T``. The bound is exact in scale (every row of ``A^-1`` shrinks as the scales
    grow, so the smallest ones are the worst), in shear (each entry of ``shear^-1`` is a ratio of
    functions affine in each shear factor, monotonic along each, so the worst case is at a vertex of
    the shear box), in ``y`` (a linear function is extreme at a corner) and in the rotation about Z
    (a sinusoid, see :func:`_reach_at`). Rotations about Y and X, when their ranges are not single
    angles, go through a Lipschitz branch and bound (see :func:`_tilt_slopes`): a cell of angles
    whose value at its centre plus slope times half-widths cannot beat the best value found is
    dropped, the others are halved, until that slack is at most ``_REACH_TOLERANCE`` voxels, or the
    read size it gives (:func:`_read_for` of ``output``) is decided, the same for the best value found
    and for the bound, or the refinement would exceed ``_REACH_BUDGET`` evaluations (the bound then
    stays conservative, only less tight).

    Parameters
    ----------
    rotate : Tensor
        (3, 2) rotation angle ranges (min, max) in radians about Z, Y, X, as in :class:`BatchedRandAffined`.
    shear : Tensor
        (6, 2) shear angle ranges in radians, MONAI's facet order.
    scale_min : Tensor
        (3,) smallest scale factor along Z, Y, X.
    corners : Tensor
        (K, 3) points ``y`` (ZYX voxels), the corners of a box.
    output : Sequence[int] | None
        Output size (Z, Y, X) whose read size the bound is for, to stop refining once it is decided.

    Returns
    -------
    Tensor
        (3,) the bound per axis Z, Y, X.
    """
    inverses = _shear_scale_inverses(shear, scale_min)
    slopes = _tilt_slopes(inverses, rotate[2], float(corners.norm(dim=1).max()))
    low, width = rotate[1:, 0], rotate[1:, 1] - rotate[1:, 0]
    counts = torch.tensor([max(1, math.ceil(w / _REACH_CELL)) for w in width.tolist()])
    half, varying = width / (2 * counts), width > 0
    cells = (lo + h * (2 * torch.arange(c) + 1) for lo, h, c in zip(low, half, counts, strict=True))
    centres = torch.cartesian_prod(*cells).reshape(-1, 2)
    best = torch.zeros(3, dtype=torch.float64)
    while True:
        values = _reach_at(centres, rotate[0], inverses, corners)
        best = torch.maximum(best, values.amax(0))
        slack = slopes @ half
        upper = values + slack
        bound = torch.maximum(best, upper.amax(0))
        decided = output is not None and all(
            _read_for(low, size) == _read_for(high, size)
            for low, high, size in zip(best.tolist(), bound.tolist(), output, strict=True)
        )
        refined = centres.shape[0] * 2 ** int(varying.sum()) * inverses.shape[0] * corners.shape[0]
        if decided or float(slack.max()) <= _REACH_TOLERANCE or refined > _REACH_BUDGET:
            return bound
        centres = _split(centres[(upper > best).any(1)], half, varying)
        half = half / 2


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
    centre in voxel units; the samples that are not selected are returned untouched (only
    centre-cropped when ``spatial_size`` is set).

    Parameters
    ----------
    prob, rotate_range, shear_range, translate_range, scale_range, mode
        As in :class:`BatchedRandAffined`, which documents the units and axis order of every range.
    spatial_size : Sequence[int] | int | None
        Output spatial size (Z, Y, X), at most the input's; an int applies to all three axes and a
        non-positive entry keeps the input's size along that axis. The affine then resamples
        straight into the centred window of this size (one ``grid_sample`` at the output size),
        which equals the affine on the whole input followed by
        :class:`~viscy_transforms.BatchedCenterSpatialCrop` to ``spatial_size``, up to float
        rounding; samples that are not selected are only centre-cropped. Default None: the output
        has the input's size.

    Attributes
    ----------
    translate_reference_size : tuple[int, int, int] | None
        Size (Z, Y, X) that ``translate_range`` is a fraction of; None (default) for the input's
        size. A data module that reads a smaller region than configured (only what the draws can
        sample, :meth:`smallest_read_size`) sets it to the configured read, so that translations
        keep their length in voxels.
    """

    def __init__(
        self,
        prob: float = 0.1,
        rotate_range: RangeSpec = None,
        shear_range: RangeSpec = None,
        translate_range: RangeSpec = None,
        scale_range: tuple[float, float] | Sequence[tuple[float, float]] | None = None,
        mode: str = "bilinear",
        spatial_size: Sequence[int] | int | None = None,
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
        self.spatial_size = spatial_size
        self.translate_reference_size = None
        super().__init__()

    @property
    def spatial_size(self) -> tuple[int, int, int] | None:
        """Output spatial size (Z, Y, X) that the affine resamples into, or None for the input's size."""
        return self._spatial_size

    @spatial_size.setter
    def spatial_size(self, spatial_size: Sequence[int] | int | None) -> None:
        self._spatial_size = _check_spatial_size(spatial_size)

    @property
    def translate_reference_size(self) -> tuple[int, int, int] | None:
        """Size (Z, Y, X) that ``translate_range`` is a fraction of, or None for the input's size."""
        return self._translate_reference_size

    @translate_reference_size.setter
    def translate_reference_size(self, size: Sequence[int] | int | None) -> None:
        reference = _check_spatial_size(size, "translate_reference_size")
        if reference is not None and min(reference) < 1:
            raise ValueError(f"translate_reference_size must be positive, got {reference}")
        self._translate_reference_size = reference

    def _translation_scale(self, input_shape: Sequence[int]) -> Tensor:
        """Voxels per unit of ``translate_range`` along Z, Y, X: the reference size, or the input's."""
        reference = self.translate_reference_size
        return torch.tensor(input_shape if reference is None else reference, dtype=torch.float64)

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
        """Resample the selected samples of a (B, C, Z, Y, X) batch with their affines, into ``spatial_size``.

        The translation is a fraction of :attr:`translate_reference_size` (default: the input's
        size, the read), with or without ``spatial_size``.
        """
        check_batch_shape(data.shape, self)
        spatial_shape = tuple(data.shape[2:])
        output_shape = _output_shape(self.spatial_size, spatial_shape)
        centre = _crop_centre(output_shape, spatial_shape)

        def resample(sub: Tensor, index: Tensor) -> Tensor:
            translation = params.translation[index] * self._translation_scale(spatial_shape)
            theta = sampling_theta(params.linear[index], translation - centre, spatial_shape, output_shape)
            theta = theta.to(device=sub.device, dtype=sub.dtype)
            grid = F.affine_grid(theta, [*sub.shape[:2], *output_shape], align_corners=False)
            return F.grid_sample(sub, grid, mode=self.mode, padding_mode="zeros", align_corners=False)

        unselected = None if output_shape == spatial_shape else BatchedCenterSpatialCrop(output_shape)(data)
        return apply_to_selected(data, params.selected, resample, unselected=unselected)

    def smallest_read_size(self, spatial_size: Sequence[int] | int | None = None) -> tuple[int, int, int]:
        """Return the smallest input (read) size from which no draw of the ranges samples outside the input.

        An input of this size, centred on the output's centre, gives the same output as any larger
        input centred there (up to float rounding), whatever the draw: the zero padding never shows.
        Output voxel ``q`` (relative to the output's centre) samples the input at
        ``A^-1 @ (q - t)``; with bilinear interpolation that position must lie within the input's
        outermost voxel centres, ``|position| <= (n - 1) / 2`` along an axis of size ``n``. So ``n``
        is the smallest integer ``>= 2 * reach + 1`` with the parity of the output size (so that both
        centres coincide: the read is centred on the output's centre, about which the affine acts),
        where ``reach`` is the largest ``|position|`` over every draw and every output voxel. It is
        computed exactly over scale, shear, translation, the output box and the rotation about Z;
        rotations about Y and X go through a certified search (see :func:`_worst_case_reach`) that
        stops once the read size is decided, or, when its budget runs out first, errs on the large
        side. For rotation up to +-pi about Z and scale down to 0.8, a 160-voxel YX output needs
        ``2 * 79.5 * sqrt(2) / 0.8 + 1 = 282.1``, so 284.

        The translation ``t`` is a fraction of the read, as in :meth:`apply`, so the size solves
        ``n >= 2 * reach(n) + 1`` (iterated from the output size; the smallest solution when every
        translate range contains 0); with :attr:`translate_reference_size` set, it is a fraction of
        that size, whatever the read.

        Parameters
        ----------
        spatial_size : Sequence[int] | int | None
            Output size (Z, Y, X) as positive ints; None (default) uses :attr:`spatial_size`.

        Returns
        -------
        tuple[int, int, int]
            The read size (Z, Y, X), at least the output size.

        Raises
        ------
        ValueError
            If no positive output size is given, a shear of the range folds space, or the
            translate range needs an unbounded read (fractions of 1/2 of the read or more).
        """
        output = _check_spatial_size(self.spatial_size if spatial_size is None else spatial_size)
        if output is None or any(size <= 0 for size in output):
            raise ValueError(f"smallest_read_size needs the output size as positive ints (Z, Y, X), got {output!r}")
        read = output
        for _ in range(_READ_ROUNDS):
            reach = self._reach(output, read).tolist()
            needed = tuple(_read_for(r, size) for r, size in zip(reach, output, strict=True))
            if all(n <= r for n, r in zip(needed, read, strict=True)):
                return read
            read = tuple(max(n, r) for n, r in zip(needed, read, strict=True))
        raise ValueError(f"translate_range is too large: no read of at most {read} voxels contains every draw")

    def _reach(self, output: Sequence[int], read: Sequence[int]) -> Tensor:
        """Return the worst-case ``|A^-1 @ (q - t)|`` per axis (3,) over draws and output voxels ``q``."""
        half_output = (torch.tensor(output, dtype=torch.float64) - 1) / 2
        shifts = self._translate * self._translation_scale(read).unsqueeze(1)
        corners = _box_corners(-half_output - shifts[:, 1], half_output - shifts[:, 0])
        return _worst_case_reach(self._rotate, self._shear, self._scale[:, 0], corners, output)


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
        Translation as a **fraction of the image size** (the input's, also when
        :attr:`spatial_size` crops the output, unless :attr:`translate_reference_size` names
        another size) along Z, Y, X. Default None.
    scale_range : tuple[float, float] | Sequence[tuple[float, float]] | None
        Absolute scale factors (1 means unchanged): a flat (min, max) pair draws one isotropic
        factor per sample; three (min, max) pairs draw one factor per axis (ZYX). Default None.
    mode : str
        Interpolation, "bilinear" (trilinear, default) or "nearest".
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.

    Attributes
    ----------
    spatial_size : tuple[int, int, int] | None
        Output spatial size (Z, Y, X), None (default) for the input's size. When set, the affine
        resamples straight into the centred window of this size, equal (up to float rounding) to
        the affine on the whole input followed by a centre crop to it, at a fraction of the cost
        (see :class:`BatchedRandAffine`); :meth:`smallest_read_size` gives the smallest input that
        no draw samples outside of. A pipeline that follows the affine with a centre crop sets it
        (it is not a constructor argument, so configs keep the reference's signature).
    translate_reference_size : tuple[int, int, int] | None
        Size (Z, Y, X) that ``translate_range`` is a fraction of, None (default) for the input's.
        A data module that reads less than its configured patch (what the draws can sample) sets
        it to the configured patch, so that a translation keeps its length in voxels.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = True
    fuses_centre_crop: ClassVar[bool] = True

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

    @property
    def spatial_size(self) -> tuple[int, int, int] | None:
        """Output spatial size (Z, Y, X) of the wrapped :class:`BatchedRandAffine`, or None for the input's size."""
        return self.transform.spatial_size

    @spatial_size.setter
    def spatial_size(self, spatial_size: Sequence[int] | int | None) -> None:
        self.transform.spatial_size = spatial_size

    @property
    def translate_reference_size(self) -> tuple[int, int, int] | None:
        """Size (Z, Y, X) that ``translate_range`` is a fraction of (see :class:`BatchedRandAffine`), or None."""
        return self.transform.translate_reference_size

    @translate_reference_size.setter
    def translate_reference_size(self, size: Sequence[int] | int | None) -> None:
        self.transform.translate_reference_size = size

    def smallest_read_size(self, spatial_size: Sequence[int] | int | None = None) -> tuple[int, int, int]:
        """Return the smallest input size that no draw samples outside of (see :class:`BatchedRandAffine`).

        Parameters
        ----------
        spatial_size : Sequence[int] | int | None
            Output size (Z, Y, X) as positive ints; None (default) uses :attr:`spatial_size`.

        Returns
        -------
        tuple[int, int, int]
            The read size (Z, Y, X).
        """
        return self.transform.smallest_read_size(spatial_size)
