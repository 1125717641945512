"""Where a transform runs after a batch reaches the device: its kind, and whether it takes whole batches.

A transform declares both with class attributes, which the data modules read to order and run their
after-transfer transforms (``viscy_data.after_transfer``, which does not import this package: the
declarations are plain class attributes, and a :class:`TransformKind` is a ``str``):

- ``transform_kind``: a :class:`TransformKind`. The ``Batched*`` dictionary transforms,
  ``NormalizeSampled`` and the MONAI-style wrappers declare one.
- ``runs_on_batches``: True when the transform takes a whole ``(B, C, Z, Y, X)`` batch and draws per
  sample itself (every ``Batched*`` transform and ``NormalizeSampled``), False when it takes one
  ``(C, Z, Y, X)`` sample (the MONAI-style wrappers), so that a data module runs it sample by sample.
- ``fuses_centre_crop``: True on ``BatchedRandAffined``, whose ``spatial_size`` makes it resample
  straight into the centred window that a following centre crop would cut; a centre crop
  (``BatchedCenterSpatialCropd``) names that window's size in its ``centre_crop_size`` property.

Not part of the 44 reference exports of the package root.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["TransformKind"]


class TransformKind(StrEnum):
    """The kind of change a transform makes, which fixes its place after a batch reaches the device.

    A data module runs its after-transfer transforms kind by kind, in this order: every
    ``NORMALIZE`` transform on the patch as read, then the ``SPATIAL`` ones, the last of which
    produces the final patch size, then the ``INTENSITY`` ones on the final patch only.

    Examples
    --------
    >>> from viscy_transforms import BatchedRandAffined
    >>> BatchedRandAffined.transform_kind == "spatial"
    True
    """

    NORMALIZE = "normalize"
    """Rescales intensities from statistics of the patch or its FOV (percentiles, mean and std)."""
    SPATIAL = "spatial"
    """Moves, resamples or crops voxels (affine, flip, zoom, crops, elastic, Z shifts)."""
    INTENSITY = "intensity"
    """Changes each voxel's value from its own value or its neighbourhood (contrast, scaling, noise, smoothing)."""
