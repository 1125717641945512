"""Data modules that combine or concatenate other data modules."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from enum import Enum
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from monai.data.utils import no_collation
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from viscy_data._utils import _collate_samples, _loader_kwargs
from viscy_data.distributed import _ShardedLoaderMixin

__all__ = [
    "BatchedConcatDataModule",
    "BatchedConcatDataset",
    "CachedConcatDataModule",
    "CombineMode",
    "CombinedDataModule",
    "ConcatDataModule",
]

_logger = logging.getLogger(__name__)

_FIT_STAGES = ("fit", "validate")


class CombineMode(Enum):
    """How :class:`CombinedDataModule` interleaves its children's loaders (Lightning ``CombinedLoader`` modes)."""

    MIN_SIZE = "min_size"
    MAX_SIZE_CYCLE = "max_size_cycle"
    MAX_SIZE = "max_size"
    SEQUENTIAL = "sequential"


def _attach_trainer(parent: LightningDataModule, children: Sequence[LightningDataModule]) -> None:
    """Give the children the parent's trainer (only rank 0 of a node runs ``prepare_data``)."""
    for child in children:
        child.trainer = parent.trainer


class CombinedDataModule(LightningDataModule):
    """Several data modules whose loaders are combined batch by batch.

    Parameters
    ----------
    data_modules : Sequence[LightningDataModule]
        The children.
    train_mode, val_mode, test_mode, predict_mode : CombineMode or str
        Combine mode of each stage's loaders.
    """

    def __init__(
        self,
        data_modules: Sequence[LightningDataModule],
        train_mode: CombineMode | str = CombineMode.MAX_SIZE_CYCLE,
        val_mode: CombineMode | str = CombineMode.SEQUENTIAL,
        test_mode: CombineMode | str = CombineMode.SEQUENTIAL,
        predict_mode: CombineMode | str = CombineMode.SEQUENTIAL,
    ) -> None:
        super().__init__()
        if not data_modules:
            raise ValueError("CombinedDataModule needs at least one data module.")
        self.data_modules = list(data_modules)
        self.train_mode = CombineMode(train_mode).value
        self.val_mode = CombineMode(val_mode).value
        self.test_mode = CombineMode(test_mode).value
        self.predict_mode = CombineMode(predict_mode).value
        self.prepare_data_per_node = True

    def prepare_data(self) -> None:
        """Run the children's ``prepare_data`` with the trainer attached."""
        _attach_trainer(self, self.data_modules)
        for child in self.data_modules:
            child.prepare_data()

    def setup(self, stage: str | None) -> None:
        """Run the children's ``setup`` with the trainer attached."""
        _attach_trainer(self, self.data_modules)
        for child in self.data_modules:
            child.setup(stage)

    def train_dataloader(self) -> CombinedLoader:
        """Return the children's training loaders combined with ``train_mode``."""
        return CombinedLoader([child.train_dataloader() for child in self.data_modules], mode=self.train_mode)

    def val_dataloader(self) -> CombinedLoader:
        """Return the children's validation loaders combined with ``val_mode``."""
        return CombinedLoader([child.val_dataloader() for child in self.data_modules], mode=self.val_mode)

    def test_dataloader(self) -> CombinedLoader:
        """Return the children's test loaders combined with ``test_mode``."""
        return CombinedLoader([child.test_dataloader() for child in self.data_modules], mode=self.test_mode)

    def predict_dataloader(self) -> CombinedLoader:
        """Return the children's prediction loaders combined with ``predict_mode``."""
        return CombinedLoader([child.predict_dataloader() for child in self.data_modules], mode=self.predict_mode)

    def _current_mode(self) -> str:
        trainer = self.trainer
        if trainer is None or trainer.training:
            return self.train_mode
        if trainer.testing:
            return self.test_mode
        if trainer.predicting:
            return self.predict_mode
        return self.val_mode

    def _dispatch(self, hook: str, batch: Any, dataloader_idx: int) -> Any:
        """Send each child its own part of a batch through one of its batch hooks."""
        if isinstance(batch, Tensor):
            return batch
        if self._current_mode() == CombineMode.SEQUENTIAL.value:
            return getattr(self.data_modules[dataloader_idx], hook)(batch, 0)
        return [
            None if part is None else getattr(child, hook)(part, 0)
            for child, part in zip(self.data_modules, batch, strict=True)
        ]

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Run each child's ``on_before_batch_transfer`` on its part of the batch."""
        return self._dispatch("on_before_batch_transfer", batch, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Run each child's ``on_after_batch_transfer`` on its part of the batch."""
        return self._dispatch("on_after_batch_transfer", batch, dataloader_idx)


class BatchedConcatDataset(ConcatDataset):
    """Concatenated datasets read a batch at a time through their ``__getitems__``.

    ``__getitems__`` groups the requested indices by child and returns one micro-batch per
    child, tagged with ``"_dataset_idx"``. Children without ``__getitems__`` are read item by
    item and collated.
    """

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError("BatchedConcatDataset is read in batches with __getitems__.")

    def _get_sample_indices(self, index: int) -> tuple[int, int]:
        """Map a global index (negative ones count from the end) to (dataset index, local index)."""
        if index < 0:
            if -index > len(self):
                raise ValueError(f"Index {index} out of range for length {len(self)}.")
            index += len(self)
        dataset_index = bisect.bisect_right(self.cumulative_sizes, index)
        start = self.cumulative_sizes[dataset_index - 1] if dataset_index > 0 else 0
        return dataset_index, index - start

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        groups: dict[int, list[int]] = {}
        for index in indices:
            dataset_index, local_index = self._get_sample_indices(int(index))
            groups.setdefault(dataset_index, []).append(local_index)
        micro_batches = []
        for dataset_index, local_indices in groups.items():
            dataset = self.datasets[dataset_index]
            if hasattr(dataset, "__getitems__"):
                micro_batch = dataset.__getitems__(local_indices)
            else:
                micro_batch = _collate_samples([dataset[i] for i in local_indices])
            micro_batch["_dataset_idx"] = dataset_index
            micro_batches.append(micro_batch)
        return micro_batches


def _merge_values(key: str, values: list[Any]) -> Any:
    """Merge one key across micro-batches: tensors along dim 0, lists in order, dicts key by key."""
    first = values[0]
    if isinstance(first, Tensor):
        return torch.cat(values, dim=0)
    if isinstance(first, dict):
        return {k: _merge_values(f"{key}.{k}", [value[k] for value in values]) for k in first}
    if first is None and all(value is None for value in values):
        return None
    if isinstance(first, list | tuple):
        return [item for value in values for item in value]
    raise TypeError(f"Cannot merge micro-batch values of key {key!r} of type {type(first).__name__}.")


def _merge_micro_batches(micro_batches: list[dict[str, Any]]) -> dict[str, Any]:
    keys = list(micro_batches[0])
    for micro_batch in micro_batches[1:]:
        if list(micro_batch) != keys:
            raise ValueError(f"Micro-batches have different keys: {keys} and {list(micro_batch)}.")
    return {key: _merge_values(key, [micro_batch[key] for micro_batch in micro_batches]) for key in keys}


class ConcatDataModule(LightningDataModule):
    """Training on the concatenated datasets of several data modules.

    Loader settings (``num_workers``, ``batch_size``, ``persistent_workers``,
    ``prefetch_factor``, ``pin_memory``) come from the first child; workers and batch size
    must agree across children.

    Parameters
    ----------
    data_modules : Sequence[LightningDataModule]
        The children.
    seed : int
        Seed of the training shuffle.
    """

    _default_patches_per_stack = 1

    def __init__(self, data_modules: Sequence[LightningDataModule], seed: int = 0) -> None:
        super().__init__()
        if not data_modules:
            raise ValueError(f"{type(self).__name__} needs at least one data module.")
        self.data_modules = list(data_modules)
        first = self.data_modules[0]
        self.num_workers = first.num_workers
        self.batch_size = first.batch_size
        self.persistent_workers = getattr(first, "persistent_workers", False)
        self.prefetch_factor = getattr(first, "prefetch_factor", None)
        self.pin_memory = getattr(first, "pin_memory", False)
        self.seed = seed
        for child in self.data_modules[1:]:
            if child.num_workers != self.num_workers:
                raise ValueError(f"Inconsistent number of workers: {child.num_workers} and {self.num_workers}.")
            if child.batch_size != self.batch_size:
                raise ValueError(f"Inconsistent batch size: {child.batch_size} and {self.batch_size}.")
        self.prepare_data_per_node = True
        self.train_patches_per_stack = self._default_patches_per_stack

    def prepare_data(self) -> None:
        """Run the children's ``prepare_data`` with the trainer attached."""
        _attach_trainer(self, self.data_modules)
        for child in self.data_modules:
            child.prepare_data()

    def setup(self, stage: str | None) -> None:
        """Set up the children (fit and validate only) and concatenate their datasets."""
        if stage not in _FIT_STAGES:
            raise NotImplementedError(f"Only fit stage is supported (and validate); got {stage!r}.")
        _attach_trainer(self, self.data_modules)
        for child in self.data_modules:
            child.setup(stage)
        patches = {getattr(child, "train_patches_per_stack", 0) for child in self.data_modules} - {0}
        if len(patches) > 1:
            raise ValueError(f"Inconsistent patches per stack across data modules: {sorted(patches)}.")
        self.train_patches_per_stack = patches.pop() if patches else self._default_patches_per_stack
        self.train_dataset = self._concat([child.train_dataset for child in self.data_modules])
        self.val_dataset = self._concat([child.val_dataset for child in self.data_modules])

    def _concat(self, datasets: list[Dataset]) -> ConcatDataset:
        return ConcatDataset(datasets)

    def _loader_settings(self) -> dict[str, Any]:
        return _loader_kwargs(self.num_workers, self.prefetch_factor, self.persistent_workers, self.pin_memory)

    def train_dataloader(self) -> DataLoader:
        """Return shuffled training batches of ``batch_size`` patches."""
        return DataLoader(
            self.train_dataset,
            batch_size=self.batch_size // self.train_patches_per_stack,
            shuffle=True,
            generator=torch.Generator().manual_seed(self.seed),
            collate_fn=_collate_samples,
            drop_last=True,
            **self._loader_settings(),
        )

    def val_dataloader(self) -> DataLoader:
        """Return validation batches, in order."""
        return DataLoader(
            self.val_dataset,
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=_collate_samples,
            **self._loader_settings(),
        )


class _UncollatedConcatDataModule(_ShardedLoaderMixin, ConcatDataModule):
    """Concatenation whose loaders return lists (identity collate), sharded under DDP."""

    _collate_fn = staticmethod(no_collation)

    def train_dataloader(self) -> DataLoader:
        """Return shuffled training batches (lists, incomplete last batch dropped)."""
        return self._dataloader(self.train_dataset, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        """Return validation batches (lists), in order."""
        return self._dataloader(self.val_dataset, shuffle=False, drop_last=False)


class BatchedConcatDataModule(_UncollatedConcatDataModule):
    """Concatenated datasets read in per-child micro-batches (e.g. several ``TripletDataModule``).

    A batch is a list of micro-batches until :meth:`on_after_batch_transfer` runs each
    child's hook on its micro-batch and merges them (grouped by child, not in sampled
    order). Under DDP each rank reads its own shard
    (:class:`~viscy_data.distributed.ShardedDistributedSampler`).
    """

    def _concat(self, datasets: list[Dataset]) -> BatchedConcatDataset:
        return BatchedConcatDataset(datasets)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Run each micro-batch through its child's hook, then merge them into one batch."""
        if not isinstance(batch, list):
            return batch
        processed = []
        for micro_batch in batch:
            child = self.data_modules[micro_batch.pop("_dataset_idx")]
            processed.append(child.on_after_batch_transfer(micro_batch, dataloader_idx))
        return _merge_micro_batches(processed)


class CachedConcatDataModule(_UncollatedConcatDataModule):
    """Concatenated datasets of cached GPU-transform data modules (e.g. ``CachedOmeZarrDataModule``).

    Batches are lists of the children's items (identity collate); the training engine
    collates them and applies the GPU transforms. Workers persist; under DDP each rank reads
    its own shard.
    """

    def _loader_settings(self) -> dict[str, Any]:
        return _loader_kwargs(self.num_workers, self.prefetch_factor, self.num_workers > 0, self.pin_memory)
