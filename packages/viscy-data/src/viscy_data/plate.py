"""The base of the data modules that read one HCS plate in every stage.

:class:`PlateDataModule` owns where a batch is read: the plate (or its local copy), the
seeded FOV split, the stage dispatch and the loaders. Its subclasses each name the one place
where ``normalizations`` and ``augmentations`` run: per sample on the CPU
(:class:`~viscy_data.hcs.HCSDataModule`) or per batch on the device
(:class:`~viscy_data.triplet.TripletDataModule`).
"""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from viscy_data._cache import copy_plate_to_cache, store_cache_dir
from viscy_data._utils import _collate_samples, _ensure_channel_list, _loader_kwargs, _split_indices
from viscy_data.thread_loader import ThreadedDataLoader, training_device

__all__ = ["PlateDataModule"]


class PlateDataModule(LightningDataModule, ABC):
    """Base of the data modules that read patches of one HCS OME-Zarr plate.

    Where a batch is read: from the plate at ``data_path`` or, with ``caching``, from a local
    copy made once per node by :meth:`prepare_data` (:attr:`maybe_cached_data_path`), by the
    workers of :meth:`_loader` (a ``_loader_class`` that collates with ``_collate_fn``). FOVs
    are split into training and validation by :meth:`_split_positions`, seeded by ``seed``.
    :meth:`setup` sends fit and validate to ``_setup_fit``, test to ``_setup_test`` and predict
    to ``_setup_predict``.

    Where a batch is normalized and augmented is each subclass's own, single choice, named in
    its docstring: per sample on the CPU, by the dataset's transform in the loader's workers
    (:class:`~viscy_data.hcs.HCSDataModule`), or per batch on the device, after transfer, in
    ``on_after_batch_transfer`` (:class:`~viscy_data.triplet.TripletDataModule`). A subclass
    calls :meth:`_set_loader_settings` in its ``__init__``, implements ``_setup_fit`` and
    ``_setup_predict`` (and ``_setup_test`` if it tests), and sets ``normalizations`` and
    ``augmentations``.

    Parameters
    ----------
    data_path : str or Path
        HCS OME-Zarr plate.
    source_channel : str or Sequence[str]
        Input channels.
    z_window_size : int
        Z slices of a final sample.
    split_ratio : float
        Fraction of FOVs used for training; the rest validate.
    yx_patch_size : tuple[int, int]
        YX size of a final sample.
    caching : bool
        Copy the plate to a local cache directory (``$TMPDIR``) in :meth:`prepare_data` and
        read fit data from there.
    array_key : str
        Image array (multiscale level) to read.
    """

    _loader_class: type[DataLoader] = DataLoader
    _collate_fn: Callable[[list[Any]], Any] = staticmethod(_collate_samples)
    normalizations: list[Callable]
    augmentations: list[Callable]
    train_dataset: Dataset
    val_dataset: Dataset
    predict_dataset: Dataset

    def __init__(
        self,
        data_path: str | Path,
        source_channel: str | list[str],
        z_window_size: int,
        split_ratio: float,
        yx_patch_size: tuple[int, int],
        caching: bool,
        array_key: str = "0",
    ) -> None:
        super().__init__()
        self.data_path = Path(data_path)
        self.source_channel = _ensure_channel_list(source_channel)
        self.z_window_size = z_window_size
        self.split_ratio = split_ratio
        self.yx_patch_size = tuple(yx_patch_size)
        self.caching = caching
        self.array_key = array_key
        self.prepare_data_per_node = True

    def _set_loader_settings(
        self,
        batch_size: int,
        num_workers: int,
        persistent_workers: bool,
        prefetch_factor: int | None,
        pin_memory: bool,
        seed: int,
    ) -> None:
        """Keep the loader settings.

        Parameters
        ----------
        batch_size : int
            Samples per batch.
        num_workers : int
            Loader workers.
        persistent_workers : bool
            Keep workers alive between epochs (only with ``num_workers > 0``).
        prefetch_factor : int or None
            Batches prefetched per worker (only with ``num_workers > 0``).
        pin_memory : bool
            Pin batches in page-locked memory.
        seed : int
            Seed of the train/validation FOV split and of the training shuffle.
        """
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.persistent_workers = persistent_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.seed = seed

    @property
    def cache_path(self) -> Path:
        """Local copy of the plate used when ``caching`` is on (unique per source store)."""
        return store_cache_dir(self.data_path, tempfile.gettempdir()) / self.data_path.name

    @property
    def maybe_cached_data_path(self) -> Path:
        """Where fit data (and a subclass's test data) are read from."""
        return self.cache_path if self.caching else self.data_path

    def prepare_data(self) -> None:
        """Copy the plate to :attr:`cache_path` when ``caching`` is on (once per node)."""
        if self.caching:
            copy_plate_to_cache(self.data_path, self.cache_path, array_key=self.array_key)

    def setup(self, stage: str | None) -> None:
        """Build the datasets of a stage: ``fit``, ``validate``, ``test`` or ``predict``."""
        if stage in ("fit", "validate"):
            self._setup_fit()
        elif stage == "test":
            self._setup_test()
        elif stage == "predict":
            self._setup_predict()
        else:
            raise NotImplementedError(f"Stage {stage!r} is not supported; use fit, validate, test or predict.")

    @abstractmethod
    def _setup_fit(self) -> None:
        """Set ``train_dataset`` and ``val_dataset``."""

    def _setup_test(self) -> None:
        """Set ``test_dataset``; data modules without a test stage keep this refusal."""
        raise NotImplementedError(f"{type(self).__name__} does not support testing.")

    @abstractmethod
    def _setup_predict(self) -> None:
        """Set ``predict_dataset``."""

    def _split_positions(self, positions: list[Any]) -> tuple[list[Any], list[Any]]:
        """Split items (one per FOV) into train and validation with the seeded generator."""
        train_index, val_index = _split_indices(len(positions), self.split_ratio, self.seed)
        return [positions[i] for i in train_index], [positions[i] for i in val_index]

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool, drop_last: bool = False) -> DataLoader:
        """Return a loader of ``dataset`` with this module's worker settings, shuffled by ``seed``."""
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        thread_workers = issubclass(self._loader_class, ThreadedDataLoader)
        # threads copy pinned batches to the trainer's CUDA device themselves, overlapping the steps
        copy_to = {"copy_to": training_device(self.trainer)} if thread_workers else {}
        return self._loader_class(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            drop_last=drop_last,
            collate_fn=self._collate_fn,
            **_loader_kwargs(
                self.num_workers,
                self.prefetch_factor,
                self.persistent_workers,
                self.pin_memory,
                thread_workers=thread_workers,
            ),
            **copy_to,
        )

    def train_dataloader(self) -> DataLoader:
        """Return shuffled training batches of ``batch_size`` (incomplete last batch dropped)."""
        return self._loader(self.train_dataset, self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        """Return validation batches, in order."""
        return self._loader(self.val_dataset, self.batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Return prediction batches, in order."""
        return self._loader(self.predict_dataset, self.batch_size, shuffle=False)
