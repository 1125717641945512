"""Data modules that do light CPU work per sample and augment whole batches on the GPU."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping, Sequence
from multiprocessing import Manager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from iohub.ngff import Position
from lightning.pytorch import LightningDataModule
from monai.data import set_track_meta
from monai.data.utils import list_data_collate
from monai.transforms import Compose, MapTransform
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from viscy_data._utils import (
    _ensure_channel_list,
    _loader_kwargs,
    _position_channel_indices,
    _split_indices,
    _validate_store_channels,
)
from viscy_data.distributed import sharded_data_loader
from viscy_data.normalization import read_norm_meta, select_timepoint
from viscy_data.ome_compat import array_store_path, open_ome_zarr
from viscy_data.read_errors import naming_read_errors
from viscy_data.select import SelectWell

__all__ = ["CachedOmeZarrDataModule", "CachedOmeZarrDataset", "GPUTransformDataModule"]

_logger = logging.getLogger(__name__)


class GPUTransformDataModule(LightningDataModule):
    """Base of data modules with CPU transforms per sample and GPU transforms per batch.

    Subclasses set ``train_dataset``, ``val_dataset``, ``batch_size``, ``num_workers``,
    ``pin_memory`` and ``prefetch_factor``, and set the four transform pipelines with
    :meth:`_set_transforms` (or override the four transform properties). After
    a batch reaches the device, :meth:`on_after_batch_transfer` applies the training GPU
    transforms while training and the validation ones otherwise. Under DDP each rank reads
    its own contiguous shard (:class:`~viscy_data.distributed.ShardedDistributedSampler`),
    so per-rank caches stay local.
    """

    train_dataset: Dataset
    val_dataset: Dataset
    batch_size: int
    num_workers: int
    pin_memory: bool
    prefetch_factor: int | None
    seed: int = 0

    def _set_transforms(
        self,
        train_cpu_transforms: Sequence[MapTransform] | Compose | None,
        val_cpu_transforms: Sequence[MapTransform] | Compose | None,
        train_gpu_transforms: Sequence[MapTransform] | Compose | None,
        val_gpu_transforms: Sequence[MapTransform] | Compose | None,
    ) -> None:
        """Compose and keep the four transform pipelines the properties below return."""
        self._train_cpu_transforms = _compose(train_cpu_transforms)
        self._val_cpu_transforms = _compose(val_cpu_transforms)
        self._train_gpu_transforms = _compose(train_gpu_transforms)
        self._val_gpu_transforms = _compose(val_gpu_transforms)

    @property
    def train_cpu_transforms(self) -> Compose:
        """Per-sample transforms of training data."""
        return self._train_cpu_transforms

    @property
    def train_gpu_transforms(self) -> Compose:
        """Per-batch transforms of training data, on the device."""
        return self._train_gpu_transforms

    @property
    def val_cpu_transforms(self) -> Compose:
        """Per-sample transforms of validation data."""
        return self._val_cpu_transforms

    @property
    def val_gpu_transforms(self) -> Compose:
        """Per-batch transforms of validation data, on the device."""
        return self._val_gpu_transforms

    def _dataloader(self, dataset: Dataset, shuffle: bool, drop_last: bool = False) -> DataLoader:
        return sharded_data_loader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            seed=self.seed,
            drop_last=drop_last,
            collate_fn=list_data_collate,
            **_loader_kwargs(self.num_workers, self.prefetch_factor, self.num_workers > 0, self.pin_memory),
        )

    def train_dataloader(self) -> DataLoader:
        """Return shuffled training batches."""
        return self._dataloader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Return validation batches, in order."""
        return self._dataloader(self.val_dataset, shuffle=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Apply the GPU transforms of the current stage to a batch already on the device."""
        if isinstance(batch, Tensor):
            return batch
        training = self.trainer is None or self.trainer.training
        transform = self.train_gpu_transforms if training else self.val_gpu_transforms
        return transform(batch)


def _array_cache_key(image: Any, time_index: int) -> tuple[str, int]:
    """Cache key of one time point of one image array: (array path in its store, t)."""
    return str(array_store_path(image)), time_index


class CachedOmeZarrDataset(Dataset):
    """One item per FOV and time point, with volumes cached in a (shared) mapping.

    Parameters
    ----------
    positions : list[Position]
        FOVs sharing one channel order.
    channel_names : list[str]
        Channels to read.
    cache_map : MutableMapping
        Volume cache, e.g. a ``multiprocessing.Manager().dict()`` shared by workers. Keys are
        ``(array store path, t)``, so datasets of different stores or FOVs may share one map.
    transform : Compose, optional
        CPU transform of ``{channel: (1, Z, Y, X)}`` (plus ``norm_meta``).
    array_key : str
        Image array (multiscale level) to read.
    load_normalization_metadata : bool
        Add the FOV's normalization metadata at the item's time point.
    skip_cache : bool
        Read from the store every time.
    """

    def __init__(
        self,
        positions: list[Position],
        channel_names: list[str],
        cache_map: MutableMapping,
        transform: Compose | None = None,
        array_key: str = "0",
        load_normalization_metadata: bool = True,
        skip_cache: bool = False,
    ) -> None:
        super().__init__()
        if not positions:
            raise ValueError("CachedOmeZarrDataset needs at least one position.")
        self.positions = positions
        self.channel_names = _ensure_channel_list(channel_names)
        self.channel_indices = _position_channel_indices(positions, self.channel_names)
        self.cache_map = cache_map
        self.transform = transform
        self.array_key = array_key
        self.load_normalization_metadata = load_normalization_metadata
        self.skip_cache = skip_cache
        self._arrays = [position[array_key] for position in positions]
        self._norm_meta = [read_norm_meta(p) if load_normalization_metadata else None for p in positions]
        self._items = [(i, t) for i, image in enumerate(self._arrays) for t in range(image.frames)]

    def __len__(self) -> int:
        return len(self._items)

    def _read_volume(self, index: int) -> Tensor:
        """Return the ``(C, Z, Y, X)`` float32 volume of an item, from the cache when present."""
        position_index, time_index = self._items[index]
        image = self._arrays[position_index]
        key = _array_cache_key(image, time_index)
        volume = None if self.skip_cache else self.cache_map.get(key)
        if volume is None:
            with naming_read_errors(image, time_point=time_index):
                volume = torch.from_numpy(np.asarray(image.oindex[time_index, self.channel_indices], dtype=np.float32))
            if not self.skip_cache:
                self.cache_map[key] = volume
        return volume

    def _sample(self, index: int, volume: Tensor) -> dict[str, Any]:
        position_index, time_index = self._items[index]
        sample: dict[str, Any] = {name: volume[c : c + 1] for c, name in enumerate(self.channel_names)}
        norm_meta = select_timepoint(self._norm_meta[position_index], time_index)
        if norm_meta is not None:
            sample["norm_meta"] = norm_meta
        return sample

    def __getitem__(self, index: int) -> list[dict[str, Any]]:
        sample = self._sample(index, self._read_volume(index))
        if self.transform is not None:
            sample = self.transform(sample)
        return sample if isinstance(sample, list) else [sample]


def _compose(transforms: Sequence[MapTransform] | Compose | None) -> Compose:
    if isinstance(transforms, Compose):
        return transforms
    return Compose(list(transforms or []))


def _split_fit_positions(module: GPUTransformDataModule, stage: str | None) -> tuple[list[Position], list[Position]]:
    """Check the stage and split a cached module's selected FOVs into training and validation FOVs.

    ``module`` also provides :class:`~viscy_data.select.SelectWell` (``_filter_fit_fovs``) and
    has ``data_path``, ``split_ratio`` and ``seed``; the split is seeded by ``seed``.
    """
    if stage not in ("fit", "validate"):
        raise NotImplementedError(f"Stage {stage!r} is not supported; only fit and validate are.")
    plate = open_ome_zarr(module.data_path, layout="hcs", mode="r")
    positions = module._filter_fit_fovs(plate)
    set_track_meta(False)
    train_index, val_index = _split_indices(len(positions), module.split_ratio, module.seed)
    return [positions[i] for i in train_index], [positions[i] for i in val_index]


class CachedOmeZarrDataModule(GPUTransformDataModule, SelectWell):
    """FOV/time-point volumes of an HCS plate, cached in shared memory across workers.

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
    train_cpu_transforms, val_cpu_transforms : list[MapTransform]
        Per-sample transforms.
    train_gpu_transforms, val_gpu_transforms : list[MapTransform]
        Per-batch transforms on the device.
    pin_memory : bool
        Pin batches in page-locked memory.
    skip_cache : bool
        Do not cache volumes.
    include_wells : list[str], optional
        Wells to use.
    exclude_fovs : list[str], optional
        FOVs to leave out.
    prefetch_factor : int, optional
        Batches prefetched per worker.
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
        train_cpu_transforms: list[MapTransform],
        val_cpu_transforms: list[MapTransform],
        train_gpu_transforms: list[MapTransform],
        val_gpu_transforms: list[MapTransform],
        pin_memory: bool = True,
        skip_cache: bool = False,
        include_wells: list[str] | None = None,
        exclude_fovs: list[str] | None = None,
        prefetch_factor: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.data_path = Path(data_path)
        self.channels = _ensure_channel_list(channels)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.split_ratio = split_ratio
        self._set_transforms(train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms)
        self.pin_memory = pin_memory
        self.skip_cache = skip_cache
        self._include_wells = include_wells
        self._exclude_fovs = exclude_fovs
        self.prefetch_factor = prefetch_factor
        self.seed = seed
        _validate_store_channels(self.data_path, self.channels)

    def setup(self, stage: str | None) -> None:
        """Split the selected FOVs into training and validation datasets (fit and validate only)."""
        train_positions, val_positions = _split_fit_positions(self, stage)
        self._manager = Manager()
        settings = {"channel_names": self.channels, "skip_cache": self.skip_cache}
        self.train_dataset = CachedOmeZarrDataset(
            train_positions,
            cache_map=self._manager.dict(),
            transform=self.train_cpu_transforms,
            **settings,
        )
        self.val_dataset = CachedOmeZarrDataset(
            val_positions,
            cache_map=self._manager.dict(),
            transform=self.val_cpu_transforms,
            **settings,
        )
