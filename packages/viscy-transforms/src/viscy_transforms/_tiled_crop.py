"""Deterministic tiling of a sample into non-overlapping crops."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

import numpy as np
from monai.transforms import MapTransform
from monai.transforms.traits import MultiSampleTrait

from viscy_transforms._mapping import Keys, check_same_shape, present_keys
from viscy_transforms.kinds import TransformKind

__all__ = ["TiledSpatialCropSamplesd"]


class TiledSpatialCropSamplesd(MapTransform, MultiSampleTrait):
    """Cut the first ``num_samples`` tiles of a raster grid out of a (C, Z, Y, X) sample.

    The grid has ``shape // roi_size`` tiles per axis, starts at the origin and does not overlap;
    tile ``i`` is the ``i``-th in C order (X fastest). Returns a list of ``num_samples`` dicts,
    each a copy of the sample with the keys cropped to that tile; other entries (``index``,
    ``norm_meta``...) are kept in every tile.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the (C, Z, Y, X) tensors to tile; they must share their spatial shape.
    roi_size : tuple[int, int, int]
        Tile size (Z, Y, X).
    num_samples : int
        Number of tiles to return; at most the number of tiles in the grid.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = False

    def __init__(self, keys: Keys, roi_size: tuple[int, int, int], num_samples: int) -> None:
        super().__init__(keys, allow_missing_keys=False)
        if len(roi_size) != 3 or not all(isinstance(r, int) and r > 0 for r in roi_size):
            raise ValueError(f"roi_size must be 3 positive ints (Z, Y, X), got {roi_size!r}")
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        self.roi_size = tuple(roi_size)
        self.num_samples = num_samples

    def __call__(self, sample: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        """Tile the sample.

        Parameters
        ----------
        sample : Mapping[Hashable, Any]
            Sample dictionary with (C, Z, Y, X) tensors under the keys.

        Returns
        -------
        list[dict[Hashable, Any]]
            One dict per tile.
        """
        keys = present_keys(self, sample)
        check_same_shape(sample, keys, slice(-3, None), "spatial shapes", self)
        spatial_shape = tuple(sample[keys[0]].shape[-3:])
        grid = tuple(n // r for n, r in zip(spatial_shape, self.roi_size, strict=True))
        n_tiles = int(np.prod(grid))
        if self.num_samples > n_tiles:
            raise ValueError(
                f"num_samples={self.num_samples} exceeds the {n_tiles} tiles of size {self.roi_size} "
                f"that fit in spatial shape {spatial_shape}"
            )
        tiles = []
        for tile in range(self.num_samples):
            starts = [int(i) * r for i, r in zip(np.unravel_index(tile, grid), self.roi_size, strict=True)]
            window = (..., *(slice(s, s + r) for s, r in zip(starts, self.roi_size, strict=True)))
            tiles.append({**sample, **{key: sample[key][window] for key in keys}})
        return tiles
