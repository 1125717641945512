"""Data modules that do light CPU work per sample and augment whole batches on the GPU.

Two bases, one for each side of a batch:

- :class:`FOVVolumeDataset` indexes the FOV time points of a plate, reads each one as a
  ``(C, Z, Y, X)`` volume and attaches its normalization metadata; its subclasses
  (:class:`CachedOmeZarrDataset`, :class:`~viscy_data.mmap_cache.MmappedDataset`) only say
  how volumes are cached.
- :class:`GPUTransformDataModule` holds the loader settings and the four transform
  pipelines and applies the GPU ones after transfer, reseeded before every batch from
  ``(seed, epoch, rank, batch position)`` (:mod:`viscy_data.seeding`);
  :class:`FOVVolumeDataModule` adds one plate, its FOV selection and the seeded
  train/validation split.
"""

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
from viscy_data.after_transfer import after_transfer_pipeline
from viscy_data.distributed import _ShardedLoaderMixin
from viscy_data.normalization import read_norm_meta, select_timepoint
from viscy_data.ome_compat import array_store_path, open_ome_zarr
from viscy_data.read_errors import naming_read_errors
from viscy_data.seeding import BatchSeeder
from viscy_data.select import SelectWell

__all__ = [
    "CachedOmeZarrDataModule",
    "CachedOmeZarrDataset",
    "FOVVolumeDataModule",
    "FOVVolumeDataset",
    "GPUTransformDataModule",
]

_logger = logging.getLogger(__name__)

_Transforms = Sequence[MapTransform] | Compose | None
"""A transform pipeline as a data module takes it: a list of transforms, a Compose, or None (none)."""


def _compose(transforms: _Transforms) -> Compose:
    if isinstance(transforms, Compose):
        return transforms
    return Compose(list(transforms or []))


class GPUTransformDataModule(_ShardedLoaderMixin, LightningDataModule):
    """Base of data modules with CPU transforms per sample and GPU transforms per batch.

    Where a batch is read, normalized and augmented: the loader's worker processes read
    each item and run the per-sample CPU transforms (``train_cpu_transforms`` /
    ``val_cpu_transforms``) on it; MONAI's ``list_data_collate`` stacks the items; after the
    batch reaches the device, :meth:`on_after_batch_transfer` runs the per-batch GPU
    transforms, the training ones while training and the validation ones otherwise. Under
    DDP each rank reads its own contiguous shard
    (:class:`~viscy_data.distributed.ShardedDistributedSampler`), so per-rank caches stay local.
    Random draws follow :mod:`viscy_data.seeding`: the GPU transforms are reseeded before every
    batch from ``(seed, epoch, rank, batch position)``, so a run resumed mid-epoch augments as
    the uninterrupted run did; the CPU transforms are reseeded when each worker starts.

    A subclass's ``__init__`` calls :meth:`_set_loader_settings` and :meth:`_set_transforms`
    (or overrides the four transform properties); its ``setup`` sets ``train_dataset`` and
    ``val_dataset``.

    Attributes
    ----------
    batch_size, num_workers, pin_memory, prefetch_factor, seed
        Loader settings, see :meth:`_set_loader_settings`.
    train_dataset, val_dataset : Dataset
        Set by the subclass's ``setup``.
    """

    train_dataset: Dataset
    val_dataset: Dataset
    batch_size: int
    num_workers: int
    pin_memory: bool
    prefetch_factor: int | None
    seed: int = 0
    _collate_fn = staticmethod(list_data_collate)

    def _set_loader_settings(
        self, batch_size: int, num_workers: int, pin_memory: bool, prefetch_factor: int | None, seed: int
    ) -> None:
        """Keep the loader settings.

        Parameters
        ----------
        batch_size : int
            Items per batch.
        num_workers : int
            Data loading worker processes (they persist across epochs).
        pin_memory : bool
            Pin batches in page-locked memory.
        prefetch_factor : int or None
            Batches prefetched per worker; ignored (kept as None) without workers.
        seed : int
            Seed of the training shuffle, of the transforms' random draws (and of a
            subclass's FOV split).
        """
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor if num_workers > 0 else None
        self.seed = seed
        self._batch_seeder = BatchSeeder()

    def _set_transforms(
        self,
        train_cpu_transforms: _Transforms,
        val_cpu_transforms: _Transforms,
        train_gpu_transforms: _Transforms,
        val_gpu_transforms: _Transforms,
    ) -> None:
        """Compose and keep the four transform pipelines the properties below return.

        Parameters
        ----------
        train_cpu_transforms, val_cpu_transforms : list[MapTransform] or Compose, optional
            Per-sample transforms, run in the loader's workers.
        train_gpu_transforms, val_gpu_transforms : list[MapTransform] or Compose, optional
            Per-batch transforms, run on the device after transfer in the order of
            :mod:`viscy_data.after_transfer` (normalize, spatial, intensity; a random affine followed
            by a centre crop resamples straight into the crop).
        """
        self._train_cpu_transforms = _compose(train_cpu_transforms)
        self._val_cpu_transforms = _compose(val_cpu_transforms)
        self._train_gpu_transforms = after_transfer_pipeline(train_gpu_transforms)
        self._val_gpu_transforms = after_transfer_pipeline(val_gpu_transforms)

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

    def _loader_settings(self) -> dict[str, Any]:
        """DataLoader worker arguments; workers persist across epochs (they hold the caches)."""
        return _loader_kwargs(self.num_workers, self.prefetch_factor, self.num_workers > 0, self.pin_memory)

    def train_dataloader(self) -> DataLoader:
        """Return shuffled training batches."""
        return self._dataloader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Return validation batches, in order."""
        return self._dataloader(self.val_dataset, shuffle=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Apply the GPU transforms of the current stage to a batch already on the device.

        Their random draws are seeded per batch from ``(seed, epoch, rank, batch position)``
        (:class:`~viscy_data.seeding.BatchSeeder`).
        """
        if isinstance(batch, Tensor):
            return batch
        training = self.trainer is None or self.trainer.training
        transform = self.train_gpu_transforms if training else self.val_gpu_transforms
        self._batch_seeder(transform, self.seed, self.trainer)
        return transform(batch)


class FOVVolumeDataset(Dataset):
    """Base of the datasets with one item per FOV and time point, read as a whole volume.

    Items are numbered FOV by FOV, time point by time point. The base reads an item's
    ``(C, Z, Y, X)`` float32 volume (:meth:`_read_volume`; a failed read names the store, FOV
    and time point), splits it into a ``{channel: (1, Z, Y, X)}`` sample with the FOV's
    normalization metadata at the item's time point (:meth:`_sample`), and returns
    transformed items as lists (:meth:`_transformed`). Subclasses write ``__getitem__``:
    how a volume is cached and which transforms run on it.

    Parameters
    ----------
    positions : list[Position]
        FOVs sharing one channel order.
    channel_names : list[str]
        Channels to read.
    array_key : str
        Image array (multiscale level) to read.
    load_normalization_metadata : bool
        Read each FOV's normalization metadata, so that samples can carry it as ``norm_meta``.
    """

    def __init__(
        self,
        positions: list[Position],
        channel_names: list[str],
        array_key: str = "0",
        load_normalization_metadata: bool = True,
    ) -> None:
        super().__init__()
        if not positions:
            raise ValueError(f"{type(self).__name__} needs at least one position.")
        self.positions = positions
        self.channel_names = _ensure_channel_list(channel_names)
        self.channel_indices = _position_channel_indices(positions, self.channel_names)
        self.array_key = array_key
        self.load_normalization_metadata = load_normalization_metadata
        self._arrays = [position[array_key] for position in positions]
        self._norm_meta = [read_norm_meta(p) if load_normalization_metadata else None for p in positions]
        self._items = [(i, t) for i, image in enumerate(self._arrays) for t in range(image.frames)]

    def __len__(self) -> int:
        return len(self._items)

    def _read_volume(self, index: int) -> Tensor:
        """Read the ``(C, Z, Y, X)`` float32 volume of an item from its store."""
        position_index, time_index = self._items[index]
        image = self._arrays[position_index]
        with naming_read_errors(image, time_point=time_index):
            return torch.from_numpy(np.asarray(image.oindex[time_index, self.channel_indices], dtype=np.float32))

    def _sample(self, index: int, volume: Tensor, with_norm_meta: bool = True) -> dict[str, Any]:
        """Split an item's volume into ``{channel: (1, Z, Y, X)}``, plus its ``norm_meta`` when asked and present."""
        sample: dict[str, Any] = {name: volume[c : c + 1] for c, name in enumerate(self.channel_names)}
        position_index, time_index = self._items[index]
        norm_meta = select_timepoint(self._norm_meta[position_index], time_index) if with_norm_meta else None
        if norm_meta is not None:
            sample["norm_meta"] = norm_meta
        return sample

    @staticmethod
    def _transformed(sample: dict[str, Any], transform: Compose | None) -> list[dict[str, Any]]:
        """Apply a transform (if any) and return the result as a list of samples."""
        if transform is not None:
            sample = transform(sample)
        return sample if isinstance(sample, list) else [sample]


def _array_cache_key(image: Any, time_index: int) -> tuple[str, int]:
    """Cache key of one time point of one image array: (array path in its store, t)."""
    return str(array_store_path(image)), time_index


class CachedOmeZarrDataset(FOVVolumeDataset):
    """One item per FOV and time point, with volumes cached in a (shared) mapping.

    Parameters
    ----------
    positions, channel_names
        As in :class:`FOVVolumeDataset`.
    cache_map : MutableMapping
        Volume cache, e.g. a ``multiprocessing.Manager().dict()`` shared by workers. Keys are
        ``(array store path, t)``, so datasets of different stores or FOVs may share one map.
    transform : Compose, optional
        CPU transform of ``{channel: (1, Z, Y, X)}`` (plus ``norm_meta``).
    array_key : str
        As in :class:`FOVVolumeDataset`.
    load_normalization_metadata : bool
        Add the FOV's normalization metadata at the item's time point as ``norm_meta``.
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
        super().__init__(positions, channel_names, array_key, load_normalization_metadata)
        self.cache_map = cache_map
        self.transform = transform
        self.skip_cache = skip_cache

    def _cached_volume(self, index: int) -> Tensor:
        """Return an item's volume from the cache, reading (and caching) it on a miss."""
        position_index, time_index = self._items[index]
        key = _array_cache_key(self._arrays[position_index], time_index)
        volume = None if self.skip_cache else self.cache_map.get(key)
        if volume is None:
            volume = self._read_volume(index)
            if not self.skip_cache:
                self.cache_map[key] = volume
        return volume

    def __getitem__(self, index: int) -> list[dict[str, Any]]:
        return self._transformed(self._sample(index, self._cached_volume(index)), self.transform)


class FOVVolumeDataModule(GPUTransformDataModule, SelectWell):
    """Base of the GPU-transform data modules that cache the FOV time points of one HCS plate.

    On top of :class:`GPUTransformDataModule` it holds the plate, its channels, the FOV
    selection of :class:`~viscy_data.select.SelectWell` and the seeded split of the selected
    FOVs into training and validation (:meth:`_split_fit_positions`). A subclass's ``setup``
    builds ``train_dataset`` and ``val_dataset`` from the two lists of FOVs.

    Parameters
    ----------
    data_path : str or Path
        HCS OME-Zarr plate.
    channels : str or list[str]
        Channels to read.
    split_ratio : float
        Fraction of the selected FOVs used for training.
    include_wells : list[str], optional
        Wells to use (all when None).
    exclude_fovs : list[str], optional
        FOVs to leave out.
    """

    def __init__(
        self,
        data_path: str | Path,
        channels: str | list[str],
        split_ratio: float,
        include_wells: list[str] | None = None,
        exclude_fovs: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.data_path = Path(data_path)
        self.channels = _ensure_channel_list(channels)
        self.split_ratio = split_ratio
        self._include_wells = include_wells
        self._exclude_fovs = exclude_fovs
        _validate_store_channels(self.data_path, self.channels)

    def _split_fit_positions(self, stage: str | None) -> tuple[list[Position], list[Position]]:
        """Check the stage and split the selected FOVs into training and validation FOVs.

        Parameters
        ----------
        stage : str or None
            The ``setup`` stage; only ``"fit"`` and ``"validate"`` are supported.

        Returns
        -------
        tuple[list[Position], list[Position]]
            Training and validation FOVs, split with ``split_ratio`` by a generator seeded by ``seed``.
        """
        if stage not in ("fit", "validate"):
            raise NotImplementedError(f"Stage {stage!r} is not supported; only fit and validate are.")
        plate = open_ome_zarr(self.data_path, layout="hcs", mode="r")
        positions = self._filter_fit_fovs(plate)
        set_track_meta(False)
        train_index, val_index = _split_indices(len(positions), self.split_ratio, self.seed)
        return [positions[i] for i in train_index], [positions[i] for i in val_index]


class CachedOmeZarrDataModule(FOVVolumeDataModule):
    """FOV/time-point volumes of an HCS plate, cached in shared memory across workers.

    Where a batch is read, normalized and augmented: a worker process reads an item's whole
    volume once (later epochs take it from a ``Manager`` dict shared by the workers) and runs
    the per-sample CPU transforms on it; the per-batch GPU transforms run after transfer (see
    :class:`GPUTransformDataModule`).

    Parameters
    ----------
    data_path, channels, split_ratio, include_wells, exclude_fovs
        As in :class:`FOVVolumeDataModule`.
    batch_size, num_workers, pin_memory, prefetch_factor, seed
        Loader settings, as in :meth:`GPUTransformDataModule._set_loader_settings`.
    train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms : list[MapTransform]
        Transform pipelines, as in :meth:`GPUTransformDataModule._set_transforms`.
    skip_cache : bool
        Do not cache volumes (read every item from the store).
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
        super().__init__(data_path, channels, split_ratio, include_wells, exclude_fovs)
        self._set_loader_settings(batch_size, num_workers, pin_memory, prefetch_factor, seed)
        self._set_transforms(train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms)
        self.skip_cache = skip_cache

    def _dataset(self, positions: list[Position], transform: Compose) -> CachedOmeZarrDataset:
        return CachedOmeZarrDataset(
            positions,
            channel_names=self.channels,
            cache_map=self._manager.dict(),
            transform=transform,
            skip_cache=self.skip_cache,
        )

    def setup(self, stage: str | None) -> None:
        """Split the selected FOVs into training and validation datasets (fit and validate only)."""
        train_positions, val_positions = self._split_fit_positions(stage)
        self._manager = Manager()
        self.train_dataset = self._dataset(train_positions, self.train_cpu_transforms)
        self.val_dataset = self._dataset(val_positions, self.val_cpu_transforms)
