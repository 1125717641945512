"""Random local pixel shuffling inside small cubic patches of batched volumes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from viscy_transforms._mapping import Keys, SharedDrawMapTransform
from viscy_transforms._random import (
    BATCH_AND_SPATIAL_SHAPES,
    RandomTransform,
    apply_to_selected,
    check_batch_shape,
    check_probability,
    field_generator,
)
from viscy_transforms.kinds import TransformKind

__all__ = ["BatchedRandLocalPixelShuffling", "BatchedRandLocalPixelShufflingd", "PixelShuffleParams"]

#: upper bound on the number of shuffled patches per sample, as in the reference
_MAX_PATCHES = 100


@dataclass(frozen=True, eq=False)
class PixelShuffleParams:
    """One draw of :class:`BatchedRandLocalPixelShuffling`.

    ``selected`` (B,) says which samples are shuffled; ``seed`` seeds the choice of patches and
    their permutations, generated on the data's device.
    """

    selected: Tensor
    seed: int


class BatchedRandLocalPixelShuffling(RandomTransform[PixelShuffleParams]):
    """Array version of :class:`BatchedRandLocalPixelShufflingd`: shuffle voxels in patches of (B, C, Z, Y, X) data.

    Each sample is selected with probability ``prob``; see :class:`BatchedRandLocalPixelShufflingd`
    for how many patches are chosen and how.

    Parameters
    ----------
    patch_size, shuffle_prob, prob
        As in :class:`BatchedRandLocalPixelShufflingd`.
    """

    shared_shape = BATCH_AND_SPATIAL_SHAPES

    def __init__(self, patch_size: int = 3, shuffle_prob: float = 0.1, prob: float = 0.1) -> None:
        if not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
        self.patch_size = patch_size
        self.shuffle_prob = check_probability(shuffle_prob, "shuffle_prob")
        self.prob = check_probability(prob)
        super().__init__()

    def draw_parameters(self, shape: Sequence[int]) -> PixelShuffleParams:
        """Draw the selection and the seed of the patch positions and permutations for a batch of ``shape``."""
        check_batch_shape(shape, self)
        return PixelShuffleParams(selected=self._bernoulli(shape[0], self.prob), seed=self._draw_seed())

    def _patch_voxels(
        self, count: int, spatial_shape: Sequence[int], seed: int, device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """Flat voxel indices of the patches (count, P * patch**3) and of their permuted sources."""
        size = self.patch_size
        cells = [n // size for n in spatial_shape]
        n_cells = cells[0] * cells[1] * cells[2]
        volume = spatial_shape[0] * spatial_shape[1] * spatial_shape[2]
        n_patches = min(int(self.shuffle_prob * volume / size**3), _MAX_PATCHES, n_cells)
        generator = field_generator(seed, device)
        chosen = torch.rand((count, n_cells), generator=generator, device=device).topk(n_patches, dim=1).indices
        corner_z = chosen // (cells[1] * cells[2]) * size
        corner_y = chosen // cells[2] % cells[1] * size
        corner_x = chosen % cells[2] * size
        offsets = torch.arange(size, device=device)
        offset_z, offset_y, offset_x = (o.reshape(-1) for o in torch.meshgrid(offsets, offsets, offsets, indexing="ij"))
        height, width = spatial_shape[1], spatial_shape[2]
        voxels = (
            (corner_z.unsqueeze(2) + offset_z) * height * width
            + (corner_y.unsqueeze(2) + offset_y) * width
            + (corner_x.unsqueeze(2) + offset_x)
        )
        order = torch.rand((count, n_patches, size**3), generator=generator, device=device).argsort(dim=2)
        sources = voxels.gather(2, order)
        return voxels.reshape(count, -1), sources.reshape(count, -1)

    def apply(self, data: Tensor, params: PixelShuffleParams) -> Tensor:
        """Shuffle patches of the selected samples of a (B, C, Z, Y, X) batch; ``data`` itself when none is."""
        check_batch_shape(data.shape, self)

        def shuffle(sub: Tensor, index: Tensor) -> Tensor:
            count, channels = sub.shape[:2]
            voxels, sources = self._patch_voxels(count, sub.shape[2:], params.seed, sub.device)
            if voxels.shape[1] == 0:
                return sub
            flat = sub.reshape(count, channels, -1)
            values = flat.gather(2, sources.unsqueeze(1).expand(-1, channels, -1))
            shuffled = flat.clone()
            shuffled.scatter_(2, voxels.unsqueeze(1).expand(-1, channels, -1), values)
            return shuffled.reshape(sub.shape)

        return apply_to_selected(data, params.selected, shuffle)


class BatchedRandLocalPixelShufflingd(SharedDrawMapTransform):
    """Randomly permute the voxels inside a few small cubic patches of each sample.

    Each sample is selected with probability ``prob``. A selected sample of spatial shape
    (Z, Y, X) gets ``min(int(shuffle_prob * Z * Y * X / patch_size**3), 100)`` patches, chosen at
    random without overlap among the cells of a ``patch_size`` grid anchored at the origin, and
    the voxels of every patch are permuted at random (the same permutation for all channels).
    Every key of the sample gets the same patches and permutations, so the keys must share batch
    size and spatial shape. A volume smaller than ``patch_size`` along an axis is left unchanged.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the batched (B, C, Z, Y, X) tensors to shuffle.
    patch_size : int
        Edge of the cubic patches, in voxels. Default 3.
    shuffle_prob : float
        Fraction of the volume (in patches) to shuffle, capped at 100 patches. Default 0.1.
    prob : float
        Probability of shuffling one sample. Default 0.1.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self,
        keys: Keys,
        patch_size: int = 3,
        shuffle_prob: float = 0.1,
        prob: float = 0.1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BatchedRandLocalPixelShuffling(patch_size=patch_size, shuffle_prob=shuffle_prob, prob=prob)
