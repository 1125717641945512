"""Random local pixel shuffling inside small cubic patches of batched volumes."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from torch import Tensor

from viscy_transforms._mapping import RandomMapTransform
from viscy_transforms._random import TorchRandomizable, apply_to_selected, check_probability, field_generator

__all__ = ["BatchedRandLocalPixelShufflingd"]

#: upper bound on the number of shuffled patches per sample, as in the reference
_MAX_PATCHES = 100


class BatchedRandLocalPixelShufflingd(TorchRandomizable, RandomMapTransform):
    """Randomly permute the voxels inside a few small cubic patches of each sample.

    Each sample is selected with probability ``prob``. A selected sample of spatial shape
    (Z, Y, X) gets ``min(int(shuffle_prob * Z * Y * X / patch_size**3), 100)`` patches, chosen at
    random without overlap among the cells of a ``patch_size`` grid anchored at the origin, and
    the voxels of every patch are permuted at random (the same permutation for all channels).
    Every key of the sample gets the same patches and permutations, so the keys must share batch
    size and spatial shape. A volume smaller than ``patch_size`` along an axis is left unchanged.

    Parameters
    ----------
    keys : Hashable | Sequence[Hashable]
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

    shared_shape = ((slice(0, 1), "batch sizes"), (slice(2, None), "spatial shapes"))

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable],
        patch_size: int = 3,
        shuffle_prob: float = 0.1,
        prob: float = 0.1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
        self.patch_size = patch_size
        self.shuffle_prob = check_probability(shuffle_prob, "shuffle_prob")
        self.prob = check_probability(prob)
        self._selected = torch.zeros(0, dtype=torch.bool)
        self._field_seed = 0
        self._init_random_state()

    def randomize(self, data: Tensor) -> None:
        """Draw the selection and the seed of the patch positions and permutations."""
        self._selected = self._bernoulli(data.shape[0], self.prob)
        self._field_seed = self._draw_seed()

    def _patch_voxels(self, count: int, spatial_shape: Sequence[int], device: torch.device) -> tuple[Tensor, Tensor]:
        """Flat voxel indices of the patches (count, P * patch**3) and of their permuted sources."""
        size = self.patch_size
        cells = [n // size for n in spatial_shape]
        n_cells = cells[0] * cells[1] * cells[2]
        volume = spatial_shape[0] * spatial_shape[1] * spatial_shape[2]
        n_patches = min(int(self.shuffle_prob * volume / size**3), _MAX_PATCHES, n_cells)
        generator = field_generator(self._field_seed, device)
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

    def _shuffle(self, data: Tensor, index: Tensor) -> Tensor:
        count, channels = data.shape[:2]
        voxels, sources = self._patch_voxels(count, data.shape[2:], data.device)
        if voxels.shape[1] == 0:
            return data
        flat = data.reshape(count, channels, -1)
        values = flat.gather(2, sources.unsqueeze(1).expand(-1, channels, -1))
        shuffled = flat.clone()
        shuffled.scatter_(2, voxels.unsqueeze(1).expand(-1, channels, -1), values)
        return shuffled.reshape(data.shape)

    def apply(self, data: Tensor) -> Tensor:
        """Shuffle patches of the selected samples of one key's (B, C, Z, Y, X) batch."""
        if data.ndim != 5:
            raise ValueError(f"{type(self).__name__} expects (B, C, Z, Y, X) data, got shape {tuple(data.shape)}")
        return apply_to_selected(data, self._selected, self._shuffle)
