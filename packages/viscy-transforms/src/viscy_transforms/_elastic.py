"""Random 3D elastic deformation of batched volumes, one field per sample shared by all keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from viscy_transforms._crop import BatchedCenterSpatialCrop, center_crop_starts
from viscy_transforms._gaussian_filter import gaussian_kernels_1d, separable_gaussian_filter
from viscy_transforms._mapping import Keys, SharedDrawMapTransform
from viscy_transforms._random import (
    BATCH_AND_SPATIAL_SHAPES,
    RandomTransform,
    apply_to_selected,
    check_batch_shape,
    check_interval,
    check_probability,
    field_generator,
)
from viscy_transforms.kinds import TransformKind

__all__ = ["BatchedRand3DElastic", "BatchedRand3DElasticd", "ElasticParams", "warp"]

_MODES = ("bilinear", "nearest")
_PADDING_MODES = ("zeros", "border", "reflection")
#: radius of the Gaussian smoothing the random field, in sigmas
_FIELD_TRUNCATION = 3.0


def _voxel_to_normalized(position: Tensor, size: int) -> Tensor:
    """Voxel coordinate to ``grid_sample``'s [-1, 1] with ``align_corners=True``."""
    if size == 1:
        return torch.zeros_like(position)
    return position * (2.0 / (size - 1)) - 1.0


def warp(
    data: Tensor, displacement: Tensor, starts: Sequence[int], mode: str = "bilinear", padding_mode: str = "zeros"
) -> Tensor:
    """Sample ``data`` at displaced positions of an output grid.

    Output voxel ``(z, y, x)`` of sample ``n`` reads ``data[n]`` at the input voxel position
    ``(starts[0] + z + dz, starts[1] + y + dy, starts[2] + x + dx)``, with ``(dz, dy, dx) =
    displacement[n, :, z, y, x]``.

    Parameters
    ----------
    data : Tensor
        Shape (N, C, Z, Y, X).
    displacement : Tensor
        Shape (N, 3, Zo, Yo, Xo), in voxels; channels are the Z, Y and X displacements. The output
        has spatial shape (Zo, Yo, Xo).
    starts : Sequence[int]
        Input voxel of the output's first voxel along Z, Y, X (0 when the output has the input's shape).
    mode : str
        "bilinear" or "nearest".
    padding_mode : str
        ``grid_sample`` padding for positions outside the input: "zeros", "border" or "reflection".

    Returns
    -------
    Tensor
        Shape (N, C, Zo, Yo, Xo).
    """
    output_shape = displacement.shape[2:]
    axes = [
        torch.arange(start, start + size, device=data.device, dtype=data.dtype)
        for start, size in zip(starts, output_shape, strict=True)
    ]
    base = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    positions = base.unsqueeze(0) + displacement.to(data.dtype)
    normalized = [_voxel_to_normalized(positions[:, axis], data.shape[2 + axis]) for axis in range(3)]
    # grid_sample wants the last dim ordered (x, y, z)
    grid = torch.stack(normalized[::-1], dim=-1)
    return F.grid_sample(data, grid, mode=mode, padding_mode=padding_mode, align_corners=True)


@dataclass(frozen=True, eq=False)
class ElasticParams:
    """One draw of :class:`BatchedRand3DElastic`.

    ``selected`` (B,) says which samples are deformed, ``sigmas`` (B,) and ``magnitudes`` (B,)
    shape their fields, in voxels, and ``seed`` seeds the white noise of the fields, generated on
    the data's device.
    """

    selected: Tensor
    sigmas: Tensor
    magnitudes: Tensor
    seed: int


class BatchedRand3DElastic(RandomTransform[ElasticParams]):
    """Array version of :class:`BatchedRand3DElasticd`: deform each sample of a (B, C, Z, Y, X) batch.

    Each sample is selected with probability ``prob`` and deformed by a field of its own; all
    samples are center-cropped to ``spatial_size``.

    Parameters
    ----------
    sigma_range, magnitude_range, spatial_size, prob, mode, padding_mode
        As in :class:`BatchedRand3DElasticd`.
    """

    shared_shape = BATCH_AND_SPATIAL_SHAPES

    def __init__(
        self,
        sigma_range: tuple[float, float],
        magnitude_range: tuple[float, float],
        spatial_size: Sequence[int] | int | None = None,
        prob: float = 0.1,
        mode: str = "bilinear",
        padding_mode: str = "reflection",
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.sigma_range = check_interval(sigma_range, "sigma_range")
        self.magnitude_range = check_interval(magnitude_range, "magnitude_range")
        if self.sigma_range[0] < 0 or self.magnitude_range[0] < 0:
            raise ValueError(
                f"sigma_range and magnitude_range must be non-negative, got {sigma_range!r} and {magnitude_range!r}"
            )
        self.spatial_size = self._check_spatial_size(spatial_size)
        self.prob = check_probability(prob)
        self.mode = mode
        self.padding_mode = padding_mode
        super().__init__()

    @staticmethod
    def _check_spatial_size(spatial_size: Sequence[int] | int | None) -> tuple[int, int, int] | None:
        if spatial_size is None:
            return None
        size = (spatial_size,) * 3 if isinstance(spatial_size, int) else tuple(spatial_size)
        if len(size) != 3 or not all(isinstance(s, int) for s in size):
            raise ValueError(f"spatial_size must be None, an int or 3 ints (Z, Y, X), got {spatial_size!r}")
        return size

    def _output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        if self.spatial_size is None:
            return tuple(input_shape)
        output = tuple(s if s > 0 else n for s, n in zip(self.spatial_size, input_shape, strict=True))
        if any(s > n for s, n in zip(output, input_shape, strict=True)):
            raise ValueError(f"spatial_size {self.spatial_size} exceeds the input spatial shape {tuple(input_shape)}")
        return output

    def draw_parameters(self, shape: Sequence[int]) -> ElasticParams:
        """Draw the selection, sigmas, magnitudes and the field seed for a (B, C, Z, Y, X) batch of ``shape``."""
        check_batch_shape(shape, self)
        batch_size = shape[0]
        return ElasticParams(
            selected=self._bernoulli(batch_size, self.prob),
            sigmas=self._uniform(*self.sigma_range, batch_size),
            magnitudes=self._uniform(*self.magnitude_range, batch_size),
            seed=self._draw_seed(),
        )

    @staticmethod
    def _displacement(params: ElasticParams, index: Tensor, output_shape: Sequence[int], like: Tensor) -> Tensor:
        """Displacement fields (N, 3, *output_shape) in voxels for the selected samples ``index``."""
        generator = field_generator(params.seed, like.device)
        noise = torch.randn(
            (index.numel(), 3, *output_shape), generator=generator, device=like.device, dtype=torch.float32
        )
        sigmas = params.sigmas[index]
        smooth = separable_gaussian_filter(noise, sigmas.unsqueeze(1).expand(-1, 3), _FIELD_TRUNCATION, "constant")
        # standard deviation of white noise after the separable (3-axis) smoothing
        kernel_norms = gaussian_kernels_1d(sigmas, _FIELD_TRUNCATION).square().sum(dim=1) ** 1.5
        scale = (params.magnitudes[index] / kernel_norms).to(device=like.device, dtype=torch.float32)
        return smooth * scale.reshape(-1, 1, 1, 1, 1)

    def apply(self, data: Tensor, params: ElasticParams) -> Tensor:
        """Deform the selected samples of a (B, C, Z, Y, X) batch with their fields and center-crop all samples."""
        check_batch_shape(data.shape, self)
        output_shape = self._output_shape(data.shape[2:])
        starts = center_crop_starts(output_shape, data.shape[2:])

        def deform(sub: Tensor, index: Tensor) -> Tensor:
            displacement = self._displacement(params, index, output_shape, sub)
            return warp(sub, displacement, starts, mode=self.mode, padding_mode=self.padding_mode)

        cropped = BatchedCenterSpatialCrop(output_shape)(data)
        return apply_to_selected(data, params.selected, deform, unselected=cropped)


class BatchedRand3DElasticd(SharedDrawMapTransform):
    """Randomly deform each sample of (B, C, Z, Y, X) batches with a smooth random displacement field.

    Each sample is selected once with probability ``prob`` and gets its own field: white noise
    smoothed by a Gaussian of width sigma ~ U(sigma_range) (in voxels, on all three axes),
    scaled so that every displacement component has standard deviation magnitude ~
    U(magnitude_range) voxels (smaller within about 3 sigma of the border, where the smoothing
    sees zero padding). Every key of a sample gets the very same field, so source and target stay
    aligned; the keys must share batch size and spatial shape (channels may differ).

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the batched tensors to deform.
    sigma_range : tuple[float, float]
        Range of the smoothing sigma, in voxels.
    magnitude_range : tuple[float, float]
        Range of the displacement's standard deviation, in voxels.
    spatial_size : Sequence[int] | int | None
        Output spatial size (Z, Y, X), at most the input size: the output is the deformed volume
        center-cropped to this size (samples not selected are only center-cropped, as by
        :class:`BatchedCenterSpatialCrop`). None or non-positive entries keep the input size.
    prob : float
        Probability of deforming one sample. Default 0.1.
    mode : str
        Interpolation, "bilinear" (default) or "nearest".
    padding_mode : str
        Values read outside the volume: "zeros", "border" or "reflection" (default).
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self,
        keys: Keys,
        sigma_range: tuple[float, float],
        magnitude_range: tuple[float, float],
        spatial_size: Sequence[int] | int | None = None,
        prob: float = 0.1,
        mode: str = "bilinear",
        padding_mode: str = "reflection",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BatchedRand3DElastic(
            sigma_range=sigma_range,
            magnitude_range=magnitude_range,
            spatial_size=spatial_size,
            prob=prob,
            mode=mode,
            padding_mode=padding_mode,
        )
