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

import numpy as np
import torch
from iohub.ngff import Position
from monai.transforms import Compose, MapTransform
from torch import Tensor
from torch.utils.data import Dataset

from viscy_data._cache import store_cache_dir
from viscy_data._optional import import_optional
from viscy_data._utils import (
    _ensure_channel_list,
    _position_channel_indices,
    _validate_store_channels,
)
from viscy_data.gpu_aug import GPUTransformDataModule, _compose, _split_fit_positions
from viscy_data.normalization import read_norm_meta, select_timepoint
from viscy_data.read_errors import naming_read_errors
from viscy_data.select import SelectWell

if TYPE_CHECKING:
    from tensordict import MemoryMappedTensor

__all__ = ["MmappedDataModule", "MmappedDataset"]

_logger = logging.getLogger(__name__)


def _require_tensordict(feature: str) -> Any:
    return import_optional("tensordict", extra="mmap", feature=feature)


class MmappedDataset(Dataset):
    """One item per FOV and time point, preprocessed once into a memory-mapped buffer.

    Parameters
    ----------
    positions : list[Position]
        FOVs sharing one channel order and one shape.
    channel_names : list[str]
        Channels to read.
    cache_map : MutableMapping
        Fill flags of the buffer rows, shared by workers (e.g. ``Manager().dict()``); use one
        map per buffer.
    buffer : MemoryMappedTensor
        ``(len(self), C, Z, Y, X)`` float32 buffer.
    preprocess_transforms : Compose, optional
        Run once per item before caching (e.g. normalization); must keep the shape.
    cpu_transform : Compose, optional
        Run on every access.
    array_key : str
        Image array to read.
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
        super().__init__()
        self.positions = positions
        self.channel_names = _ensure_channel_list(channel_names)
        self.channel_indices = _position_channel_indices(positions, self.channel_names)
        self.cache_map = cache_map
        self.buffer = buffer
        self.preprocess_transforms = preprocess_transforms
        self.cpu_transform = cpu_transform
        self.array_key = array_key
        self._arrays = [position[array_key] for position in positions]
        self._norm_meta = [read_norm_meta(p) if load_normalization_metadata else None for p in positions]
        self._items = [(i, t) for i, image in enumerate(self._arrays) for t in range(image.frames)]
        if len(buffer) != len(self._items):
            raise ValueError(f"Buffer has {len(buffer)} rows for {len(self._items)} FOV time points.")

    def __len__(self) -> int:
        return len(self._items)

    def _split(self, volume: Tensor) -> dict[str, Any]:
        return {name: volume[c : c + 1] for c, name in enumerate(self.channel_names)}

    def _preprocess(self, index: int) -> Tensor:
        position_index, time_index = self._items[index]
        image = self._arrays[position_index]
        with naming_read_errors(image, time_point=time_index):
            volume = torch.from_numpy(np.asarray(image.oindex[time_index, self.channel_indices], dtype=np.float32))
        if self.preprocess_transforms is None:
            return volume
        sample = self._split(volume)
        norm_meta = select_timepoint(self._norm_meta[position_index], time_index)
        if norm_meta is not None:
            sample["norm_meta"] = norm_meta
        sample = self.preprocess_transforms(sample)
        processed = torch.cat([torch.as_tensor(sample[name]) for name in self.channel_names], dim=0)
        if processed.shape != volume.shape:
            raise ValueError(
                f"preprocess_transforms changed the shape {tuple(volume.shape)} to {tuple(processed.shape)}."
            )
        return processed

    def __getitem__(self, index: int) -> list[dict[str, Any]]:
        if self.cache_map.get(index):
            volume = self.buffer[index]
        else:
            volume = self._preprocess(index)
            self.buffer[index] = volume
            self.cache_map[index] = True
        sample = self._split(torch.as_tensor(volume))
        if self.cpu_transform is not None:
            sample = self.cpu_transform(sample)
        return sample if isinstance(sample, list) else [sample]


class MmappedDataModule(GPUTransformDataModule, SelectWell):
    """FOV/time-point volumes preprocessed once into memory-mapped files on local scratch.

    Parameters
    ----------
    data_path : str or Path
        HCS OME-Zarr plate.
    channels : str or list[str]
        Channels to read.
    batch_size : int
        Items per batch.
    num_workers : int
        Data loading worker processes.
    split_ratio : float
        Fraction of FOVs used for training.
    preprocess_transforms : list[MapTransform]
        Run once per item before caching.
    train_cpu_transforms, val_cpu_transforms : list[MapTransform]
        Per-sample transforms.
    train_gpu_transforms, val_gpu_transforms : list[MapTransform]
        Per-batch transforms on the device.
    pin_memory : bool
        Pin batches in page-locked memory.
    prefetch_factor : int, optional
        Batches prefetched per worker (ignored without workers).
    array_key : str
        Image array to read.
    scratch_dir : Path, optional
        Root of the cache (default the system temporary directory).
    include_wells : list[str], optional
        Wells to use.
    exclude_fovs : list[str], optional
        FOVs to leave out.
    seed : int
        Seed of the FOV split and the shuffle.
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
        super().__init__()
        self.data_path = Path(data_path)
        self.channels = _ensure_channel_list(channels)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.split_ratio = split_ratio
        self.preprocess_transforms = _compose(preprocess_transforms)
        self._set_transforms(train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms)
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor if num_workers > 0 else None
        self.array_key = array_key
        self.scratch_dir = scratch_dir
        self._include_wells = include_wells
        self._exclude_fovs = exclude_fovs
        self.seed = seed
        _validate_store_channels(self.data_path, self.channels)

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

    def setup(self, stage: str | None) -> None:
        """Split the selected FOVs and create the buffers (fit and validate only)."""
        train_positions, val_positions = _split_fit_positions(self, stage)
        shapes = {tuple(position[self.array_key].shape) for position in train_positions + val_positions}
        if len(shapes) > 1:
            raise ValueError(f"All FOVs must have one array shape to share a buffer; found {sorted(shapes)}.")
        self._manager = Manager()
        for name, subset, transform in (
            ("train", train_positions, self.train_cpu_transforms),
            ("val", val_positions, self.val_cpu_transforms),
        ):
            dataset = MmappedDataset(
                subset,
                self.channels,
                cache_map=self._manager.dict(),
                buffer=self._buffer(f"{name}.mmap", subset),
                preprocess_transforms=self.preprocess_transforms,
                cpu_transform=transform,
                array_key=self.array_key,
            )
            setattr(self, f"{name}_dataset", dataset)
