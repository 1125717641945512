"""The one order of the transforms that a data module runs on a batch once it is on the device.

Every data module that augments after transfer (:class:`~viscy_data.triplet.TripletDataModule`,
:class:`~viscy_data.gpu_aug.GPUTransformDataModule` and its subclasses, dynaclr's
``MultiExperimentDataModule``) builds its pipeline with :func:`after_transfer_pipeline`, which
applies one rule:

1. **Normalize** on the patch as read (the statistics of percentile normalization are those of
   the read region).
2. **Spatial** transforms, in their configured order, then the data module's centre crop to the
   final patch; a ``BatchedRandAffined`` followed by a centre crop over the same keys (the data
   module's, or one configured in a ``GPUTransformDataModule``'s list) resamples straight into the
   crop (its ``spatial_size``: one ``grid_sample`` at the output size) instead of resampling the
   whole read for the crop to throw most of it away.
3. **Intensity** transforms (contrast, scaling, noise, smoothing...) on the final patch only.
4. Channel dropout, where a module has one, on the result (dynaclr's ``MultiExperimentDataModule``).

Each transform declares its kind (class attribute ``transform_kind``: ``"normalize"``, ``"spatial"``
or ``"intensity"``), whether it takes whole batches (``runs_on_batches``) and whether it can resample
into a centre crop (``fuses_centre_crop``); a centre crop says its size (``centre_crop_size``). These
are described in ``viscy_transforms.kinds`` and read here as plain attributes (viscy-data does not
import viscy-transforms), so configs keep working in any order.
A transform that declares no kind makes the rule unsafe to apply (its place may matter), so the
transforms then run in the configured order, the final crop last, and the log says which transform
declared none. A transform that does not say whether it takes batches runs sample by sample when it
is a MONAI ``Transform`` (MONAI's transforms take one sample) and on the batch otherwise.

Which outputs change, for the same seed, against running the transforms in the configured order on
the whole read: the fused affine samples the same points (equal within float rounding); intensity
transforms draw at the final shape instead of the read's (noise and the per-sample draws of later
transforms come from other generator positions, with the same distribution), smoothing sees zero
padding at the patch border where it saw the read's neighbouring pixels, and contrast (gamma) takes
the minimum and range of the final patch instead of those of the read. These outputs change only
statistically: ``tests/test_after_transfer.py`` compares their distributions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
import torch
from monai.transforms import Compose, Randomizable, Transform
from torch import Tensor

from viscy_data._utils import BatchedCenterSpatialCropd

__all__ = ["PerSample", "after_transfer_pipeline", "declared_kind", "handles_batches", "smallest_read_yx"]

_logger = logging.getLogger(__name__)

_ORDER = {"normalize": 0, "spatial": 1, "intensity": 2}
"""Rank of each declared ``transform_kind`` (``viscy_transforms.kinds.TransformKind`` values) in the pipeline."""


def declared_kind(transform: object) -> str | None:
    """Return the kind a transform declares (class attribute ``transform_kind``), or None.

    Parameters
    ----------
    transform : object
        Any transform.

    Returns
    -------
    str or None
        ``"normalize"``, ``"spatial"`` or ``"intensity"``; None when the transform declares none.

    Raises
    ------
    ValueError
        If the declared kind is none of these.
    """
    kind = getattr(type(transform), "transform_kind", None)
    if kind is not None and kind not in _ORDER:
        raise ValueError(f"{type(transform).__name__}.transform_kind is {kind!r}; expected one of {list(_ORDER)}.")
    return None if kind is None else str(kind)


def handles_batches(transform: object) -> bool:
    """Whether a transform takes a whole ``(B, C, Z, Y, X)`` batch at once, drawing per sample itself.

    Parameters
    ----------
    transform : object
        Any transform.

    Returns
    -------
    bool
        Its class attribute ``runs_on_batches`` when it has one; otherwise False for a MONAI
        ``Transform`` (MONAI's transforms take one ``(C, Z, Y, X)`` sample) and True for anything else.
    """
    declared = getattr(type(transform), "runs_on_batches", None)
    if declared is not None:
        return bool(declared)
    return not isinstance(transform, Transform)


class PerSample(Randomizable):
    """Run a per-sample dictionary transform (``(C, Z, Y, X)`` input, e.g. MONAI's) on each sample of a batch.

    Every sample gets its own random draw, as in a per-sample data pipeline. Tensor entries are split
    along the batch axis (``norm_meta`` trees too) and the tensors the transform returns are stacked
    back; other entries pass through. Seeding the wrapper (``set_random_state``, as ``Compose`` and
    :mod:`viscy_data.seeding` do) seeds the transform.

    Parameters
    ----------
    transform : Callable
        Dictionary transform of one sample.
    """

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> Self:
        """Reseed the wrapped transform, if it is random (MONAI's ``Randomizable`` protocol).

        Parameters
        ----------
        seed : int | None
            Integer seed.
        state : numpy.random.RandomState | None
            Used when ``seed`` is None.

        Returns
        -------
        Self
            The wrapper itself.
        """
        if callable(getattr(self.transform, "set_random_state", None)):
            self.transform.set_random_state(seed=seed, state=state)
        return self

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Transform each sample of ``batch`` and stack the results.

        Parameters
        ----------
        batch : Mapping[str, Any]
            Batched tensors (``(B, ...)``) and other entries.

        Returns
        -------
        dict[str, Any]
            ``batch`` with its tensor entries replaced by the stacked transformed samples.
        """
        size = next(len(value) for value in batch.values() if isinstance(value, Tensor) and value.ndim > 0)
        samples = [self.transform(_select_sample(batch, i, size)) for i in range(size)]
        stacked = {key: torch.stack([sample[key] for sample in samples]) for key in samples[0] if key != "norm_meta"}
        return {**batch, **{key: value for key, value in stacked.items() if isinstance(batch.get(key), Tensor)}}

    def __repr__(self) -> str:
        return f"PerSample({self.transform!r})"


def _select_sample(tree: Any, position: int, size: int) -> Any:
    """Sample ``position`` of a batch dict or of its collated ``norm_meta`` tree; other values pass through."""
    if isinstance(tree, Mapping):
        return {key: _select_sample(value, position, size) for key, value in tree.items()}
    if isinstance(tree, Tensor) and tree.ndim > 0 and len(tree) == size:
        return tree[position]
    return tree


def _flatten(transforms: Any) -> list[Any]:
    """Return the transforms of a list or ``Compose`` (nested ones flattened), in order."""
    if transforms is None:
        return []
    if isinstance(transforms, Compose):
        transforms = transforms.transforms
    flat = []
    for transform in transforms:
        flat.extend(_flatten(transform) if isinstance(transform, Compose) else [transform])
    return flat


def _ordered(transforms: list[Any]) -> list[Any]:
    """Normalize, spatial, intensity (stable within each kind); the configured order if one declares no kind."""
    undeclared = [type(transform).__name__ for transform in transforms if declared_kind(transform) is None]
    if undeclared:
        _logger.info(
            "After-transfer transforms run in the configured order, not normalize-spatial-intensity: %s "
            "declare(s) no transform_kind (viscy_transforms.kinds).",
            ", ".join(undeclared),
        )
        return transforms
    return sorted(transforms, key=lambda transform: _ORDER[declared_kind(transform)])


def _with_final_crop(transforms: list[Any], keys: Sequence[str], roi_size: tuple[int, ...]) -> list[Any]:
    """Insert the data module's final crop after the last spatial transform (last of all in configured order)."""
    spatial = [i for i, transform in enumerate(transforms) if declared_kind(transform) in ("normalize", "spatial")]
    undeclared = any(declared_kind(transform) is None for transform in transforms)
    position = len(transforms) if undeclared or not spatial else spatial[-1] + 1
    crop = BatchedCenterSpatialCropd(keys=list(keys), roi_size=roi_size)
    return [*transforms[:position], crop, *transforms[position:]]


def _fuse_centre_crops(transforms: list[Any]) -> list[Any]:
    """Let a transform that ``fuses_centre_crop`` resample straight into the centre crop right after it.

    The pair fuses when the crop (a transform with a ``centre_crop_size``) covers the same keys, its size
    is three positive ints, and the affine has no other ``spatial_size``.
    """
    fused: list[Any] = []
    for transform in transforms:
        previous = fused[-1] if fused else None
        size = getattr(transform, "centre_crop_size", None)
        size = None if size is None or isinstance(size, int) else tuple(size)
        if (
            size is not None
            and len(size) == 3
            and min(size) > 0
            and getattr(type(previous), "fuses_centre_crop", False)
            and previous.spatial_size in (None, size)
            and set(previous.keys) == set(transform.keys)
        ):
            previous.spatial_size = size
            continue
        fused.append(transform)
    return fused


def _on_batches(transforms: list[Any]) -> list[Any]:
    """Wrap the transforms that take one sample to run sample by sample (logged)."""
    wrapped = []
    for transform in transforms:
        if handles_batches(transform):
            wrapped.append(transform)
            continue
        _logger.info(
            "%s is a per-sample transform: it runs sample by sample on the device; its Batched* "
            "counterpart, if any, runs on the whole batch at once.",
            type(transform).__name__,
        )
        wrapped.append(PerSample(transform))
    return wrapped


def after_transfer_pipeline(
    transforms: Any, crop_keys: Sequence[str] | None = None, crop_size: Sequence[int] | None = None
) -> Compose:
    """Build the after-transfer pipeline of a data module: normalize, spatial to the final size, intensity.

    See the module docstring for the rule and for which outputs change only statistically.

    Parameters
    ----------
    transforms : list of transforms, Compose or None
        The configured transforms in the configured order (normalizations, then augmentations).
    crop_keys : Sequence[str], optional
        Keys of the data module's centre crop to the final patch (none without ``crop_size``).
    crop_size : Sequence[int], optional
        Spatial size of that crop, ``(Z, Y, X)``. It runs after the spatial transforms. A centre crop
        (this one, or one configured among the transforms) right after a transform that declares
        ``fuses_centre_crop`` (``BatchedRandAffined``) over the same keys, with no other
        ``spatial_size``, is fused into it: the affine resamples straight into the crop.

    Returns
    -------
    Compose
        The pipeline. It holds the very transform objects it was given (so that seeding them seeds
        it); a fused ``BatchedRandAffined`` has its ``spatial_size`` set to the crop's size. Transforms
        that take one sample are wrapped in :class:`PerSample`.
    """
    ordered = _ordered(_flatten(transforms))
    if crop_size is not None:
        ordered = _with_final_crop(ordered, crop_keys or [], tuple(crop_size))
    return Compose(_on_batches(_fuse_centre_crops(ordered)))


def smallest_read_yx(pipeline: Compose, configured_yx: Sequence[int], z: int) -> tuple[int, int]:
    """Return the smallest YX region to read around each cell from which ``pipeline`` gives the same output.

    The pipeline samples nothing outside the final patch when its only spatial transform is the
    final crop, and nothing outside ``smallest_read_size`` of a random affine that resamples into the
    final patch (``BatchedRandAffined`` with ``spatial_size`` set by :func:`after_transfer_pipeline`)
    when that is its only spatial transform. Its translations are then made relative to the
    configured read (``translate_reference_size``), so that they keep their length in voxels. With
    any other spatial transform, or a transform that declares no kind or runs sample by sample, the
    configured read is kept.

    The output is unchanged except for statistics computed over the read region: percentile
    normalization (``BatchedScaleIntensityRangePercentilesd``) takes its percentiles over the
    smaller read. Normalization by FOV statistics (``NormalizeSampled``) is unchanged.

    Parameters
    ----------
    pipeline : Compose
        An :func:`after_transfer_pipeline` with its final crop.
    configured_yx : Sequence[int]
        The configured read (``initial_yx_patch_size`` / ``yx_patch_size``), ``(Y, X)``.
    z : int
        Z slices read.

    Returns
    -------
    tuple[int, int]
        The read ``(Y, X)``: at most the configured one, of the same parity along each axis.
    """
    configured = (int(configured_yx[0]), int(configured_yx[1]))
    transforms = list(pipeline.transforms)
    if any(declared_kind(transform) is None for transform in transforms):
        return configured
    spatial = [transform for transform in transforms if declared_kind(transform) == "spatial"]
    if len(spatial) != 1:
        return configured
    (only,) = spatial
    crop_size = getattr(only, "centre_crop_size", None)
    if crop_size is not None:
        needed = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)[-2:]
    elif callable(getattr(only, "smallest_read_size", None)) and getattr(only, "spatial_size", None) is not None:
        only.translate_reference_size = (z, *configured)
        needed = only.smallest_read_size()[-2:]
    else:
        return configured
    read = []
    for size, need in zip(configured, needed, strict=True):
        need = int(need) if need > 0 else size  # a non-positive crop size keeps the whole axis
        read.append(min(size, need + (size - need) % 2))
    return read[0], read[1]
