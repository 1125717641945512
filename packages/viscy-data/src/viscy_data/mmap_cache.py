"""Preprocessed volumes cached in memory-mapped files on local scratch.

Needs the ``[mmap]`` extra (tensordict).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import MutableMapping
from multiprocessing import Manager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from iohub.ngff import Position
from monai.transforms import Compose, MapTransform
from torch import Tensor

from viscy_data._cache import store_cache_dir
from viscy_data._optional import import_optional
from viscy_data.gpu_aug import FOVVolumeDataModule, FOVVolumeDataset, _compose

if TYPE_CHECKING:
    from tensordict import MemoryMappedTensor

__all__ = ["MmappedDataModule", "MmappedDataset"]

_logger = logging.getLogger(__name__)


def _require_tensordict(feature: str) -> Any:
    return import_optional("tensordict", extra="mmap", feature=feature)


class MmappedDataset(FOVVolumeDataset):
    """One item per FOV and time point, preprocessed once into a memory-mapped buffer.

    Parameters
    ----------
    positions : list[Position]
        FOVs sharing one channel order and one shape.
    channel_names : list[str]
        As in :class:`~viscy_data.gpu_aug.FOVVolumeDataset`.
    cache_map : MutableMapping
        Fill flags of the buffer rows, shared by workers (e.g. ``Manager().dict()``); use one
        map per buffer.
    buffer : MemoryMappedTensor
        ``(len(self), C, Z, Y, X)`` float32 buffer.
    preprocess_transforms : Compose, optional
        Run once per item before caching (e.g. normalization); must keep the shape.
    cpu_transform : Compose, optional
        Run on every access (its samples carry no ``norm_meta``).
    array_key : str
        As in :class:`~viscy_data.gpu_aug.FOVVolumeDataset`.
    load_normalization_metadata : bool
        Give ``preprocess_transforms`` the FOV's normalization metadata at the item's time point.
    """

    def __init__(
        self,
        positions: list[Position],
        channel_names: list[str],
        cache_map: MutableMapping,
        buffer: MemoryMappedTensor,
        preprocess_transforms: Compose | None = None,
        cpu_transform: Compose | None = None,
        array_key: str = "0",
        load_normalization_metadata: bool = True,
    ) -> None:
        _require_tensordict("MmappedDataset")
        super().__init__(positions, channel_names, array_key, load_normalization_metadata)
        self.cache_map = cache_map
        self.buffer = buffer
        self.preprocess_transforms = preprocess_transforms
        self.cpu_transform = cpu_transform
        if len(buffer) != len(self):
            raise ValueError(f"Buffer has {len(buffer)} rows for {len(self)} FOV time points.")

    def _preprocess(self, index: int) -> Tensor:
        """Read an item and run ``preprocess_transforms`` on it, keeping its ``(C, Z, Y, X)`` shape."""
        volume = self._read_volume(index)
        if self.preprocess_transforms is None:
            return volume
        sample = self.preprocess_transforms(self._sample(index, volume))
        processed = torch.cat([torch.as_tensor(sample[name]) for name in self.channel_names], dim=0)
        if processed.shape != volume.shape:
            raise ValueError(
                f"preprocess_transforms changed the shape {tuple(volume.shape)} to {tuple(processed.shape)}."
            )
        return processed

    def _buffered_volume(self, index: int) -> Tensor:
        """Return an item's preprocessed volume from the buffer, filling its row on first access."""
        if self.cache_map.get(index):
            return torch.as_tensor(self.buffer[index])
        volume = self._preprocess(index)
        self.buffer[index] = volume
        self.cache_map[index] = True
        return volume

    def __getitem__(self, index: int) -> list[dict[str, Any]]:
        sample = self._sample(index, self._buffered_volume(index), with_norm_meta=False)
        return self._transformed(sample, self.cpu_transform)


class MmappedDataModule(FOVVolumeDataModule):
    """FOV/time-point volumes preprocessed once into memory-mapped files on local scratch.

    Where a batch is read, normalized and augmented: a worker process reads an item on first
    access, runs ``preprocess_transforms`` on it once (with its ``norm_meta``) and writes the
    result to a per-rank buffer file that later accesses read; then it runs the per-sample CPU
    transforms, and the per-batch GPU transforms run after transfer (see
    :class:`~viscy_data.gpu_aug.GPUTransformDataModule`).

    Parameters
    ----------
    data_path, channels, split_ratio, include_wells, exclude_fovs
        As in :class:`~viscy_data.gpu_aug.FOVVolumeDataModule`.
    batch_size, num_workers, pin_memory, prefetch_factor, seed
        Loader settings, as in :meth:`~viscy_data.gpu_aug.GPUTransformDataModule._set_loader_settings`.
    preprocess_transforms : list[MapTransform]
        Run once per item before caching, with the item's ``norm_meta``; must keep the shape.
    train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms : list[MapTransform]
        Transform pipelines, as in :meth:`~viscy_data.gpu_aug.GPUTransformDataModule._set_transforms`.
    array_key : str
        Image array to read.
    scratch_dir : Path, optional
        Root of the cache (default the system temporary directory).
    """

    def __init__(
        self,
        data_path: str | Path,
        channels: str | list[str],
        batch_size: int,
        num_workers: int,
        split_ratio: float,
        preprocess_transforms: list[MapTransform],
        train_cpu_transforms: list[MapTransform],
        val_cpu_transforms: list[MapTransform],
        train_gpu_transforms: list[MapTransform],
        val_gpu_transforms: list[MapTransform],
        pin_memory: bool = True,
        prefetch_factor: int | None = None,
        array_key: str = "0",
        scratch_dir: Path | None = None,
        include_wells: list[str] | None = None,
        exclude_fovs: list[str] | None = None,
        seed: int = 0,
    ) -> None:
        _require_tensordict("MmappedDataModule")
        super().__init__(data_path, channels, split_ratio, include_wells, exclude_fovs)
        self._set_loader_settings(batch_size, num_workers, pin_memory, prefetch_factor, seed)
        self._set_transforms(train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms)
        self.preprocess_transforms = _compose(preprocess_transforms)
        self.array_key = array_key
        self.scratch_dir = scratch_dir

    @property
    def cache_dir(self) -> Path:
        """Per-store, per-rank cache directory (created on access)."""
        rank = self.trainer.global_rank if self.trainer is not None else int(os.environ.get("RANK", 0))
        root = self.scratch_dir or Path(tempfile.gettempdir())
        path = store_cache_dir(self.data_path, root) / str(rank) / self.data_path.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _buffer(self, name: str, positions: list[Position]) -> MemoryMappedTensor:
        """Create (replacing a previous one) a float32 buffer for every FOV time point."""
        tensordict = _require_tensordict("MmappedDataModule")
        frames, _, slices, height, width = positions[0][self.array_key].shape
        path = self.cache_dir / name
        path.unlink(missing_ok=True)
        return tensordict.MemoryMappedTensor.empty(
            (len(positions) * frames, len(self.channels), slices, height, width),
            dtype=torch.float32,
            filename=str(path),
        )

    def _dataset(self, name: str, positions: list[Position], transform: Compose) -> MmappedDataset:
        return MmappedDataset(
            positions,
            self.channels,
            cache_map=self._manager.dict(),
            buffer=self._buffer(f"{name}.mmap", positions),
            preprocess_transforms=self.preprocess_transforms,
            cpu_transform=transform,
            array_key=self.array_key,
        )

    def setup(self, stage: str | None) -> None:
        """Split the selected FOVs and create the buffers (fit and validate only)."""
        train_positions, val_positions = self._split_fit_positions(stage)
        shapes = {tuple(position[self.array_key].shape) for position in train_positions + val_positions}
        if len(shapes) > 1:
            raise ValueError(f"All FOVs must have one array shape to share a buffer; found {sorted(shapes)}.")
        self._manager = Manager()
        self.train_dataset = self._dataset("train", train_positions, self.train_cpu_transforms)
        self.val_dataset = self._dataset("val", val_positions, self.val_cpu_transforms)
