"""Distributed sampling that keeps each rank on its own part of the dataset."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

__all__ = ["ShardedDistributedSampler", "sharded_data_loader"]


class ShardedDistributedSampler(DistributedSampler):
    """Distributed sampler giving each rank one contiguous shard of the dataset.

    Arguments are those of :class:`torch.utils.data.distributed.DistributedSampler`:
    ``(dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False)``.

    Rank ``r`` owns indices ``[r * N // R, (r + 1) * N // R)`` in every epoch: shards are
    disjoint, together cover the dataset, and never change owner, so per-rank caches stay
    local. Every rank yields ``num_samples`` indices of its own shard, in an order drawn from
    a generator seeded by ``(seed, epoch, rank)`` (in index order without ``shuffle``):
    a shard shorter than ``num_samples`` repeats from its start, a longer one (only with
    ``drop_last``) is cut, so with ``shuffle`` a different subset is dropped each epoch.
    """

    def _shard(self) -> tuple[int, int]:
        n_items = len(self.dataset)
        return self.rank * n_items // self.num_replicas, (self.rank + 1) * n_items // self.num_replicas

    def __iter__(self) -> Iterator[int]:
        start, stop = self._shard()
        size = stop - start
        n_items = len(self.dataset)
        if size == 0:
            # fewer items than ranks: borrow one so that every rank yields the same count
            return iter([self.rank % n_items] * self.num_samples if n_items else [])
        if self.shuffle:
            seed = np.random.SeedSequence([self.seed, self.epoch, self.rank]).generate_state(1)[0]
            order = torch.randperm(size, generator=torch.Generator().manual_seed(int(seed)))
        else:
            order = torch.arange(size)
        repeats = -(-self.num_samples // size)
        return iter((order.repeat(repeats)[: self.num_samples] + start).tolist())


def sharded_data_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    drop_last: bool,
    collate_fn: Callable[[list[Any]], Any],
    **loader_kwargs: Any,
) -> DataLoader:
    """Build a DataLoader that shards ``dataset`` across ranks when a process group is initialized.

    Under DDP each rank reads its own contiguous shard through :class:`ShardedDistributedSampler`
    (Lightning advances its epoch); otherwise the loader shuffles with a generator seeded by ``seed``.

    Parameters
    ----------
    dataset : Dataset
        Map-style dataset.
    batch_size : int
        Items per batch.
    shuffle : bool
        Shuffle the order (within the rank's shard under DDP).
    seed : int
        Seed of the shuffle.
    drop_last : bool
        Drop the incomplete last batch.
    collate_fn : Callable
        Collation of a list of items.
    **loader_kwargs
        Further DataLoader arguments (workers, pinning, prefetching).

    Returns
    -------
    DataLoader
        The loader.
    """
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    sampler = ShardedDistributedSampler(dataset, shuffle=shuffle, seed=seed) if distributed else None
    shuffle_here = shuffle and sampler is None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle_here,
        sampler=sampler,
        generator=torch.Generator().manual_seed(seed) if shuffle_here else None,
        drop_last=drop_last,
        collate_fn=collate_fn,
        **loader_kwargs,
    )


class _ShardedLoaderMixin:
    """Data-module mixin: loaders built by :func:`sharded_data_loader` from the module's own settings.

    The module has ``batch_size`` and ``seed``, a ``_collate_fn`` and a ``_loader_settings()``
    method returning the DataLoader worker arguments.
    """

    batch_size: int
    seed: int
    _collate_fn: Callable[[list[Any]], Any]
    _loader_settings: Callable[[], dict[str, Any]]

    def _dataloader(self, dataset: Dataset, shuffle: bool, drop_last: bool = False) -> DataLoader:
        """Return a loader of ``dataset`` that shards it across ranks under DDP."""
        return sharded_data_loader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            seed=self.seed,
            drop_last=drop_last,
            collate_fn=self._collate_fn,
            **self._loader_settings(),
        )
