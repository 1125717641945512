"""A DataLoader that reads batches in threads of the calling process and re-raises their errors.

MONAI's ``ThreadDataLoader(use_thread_workers=True)`` runs torch's worker loop in threads
behind a thread buffer that swallows exceptions: a read error printed a thread traceback,
ended the epoch early and let the run exit 0. :class:`ThreadedDataLoader` takes its place:
it is a :class:`torch.utils.data.DataLoader` whose batches are read by a pool of threads,
and any exception raised while reading a batch is re-raised by the iterating thread, with
its original traceback, when that batch is due.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

__all__ = ["ThreadedDataLoader"]

_DEFAULT_PREFETCH = 2
"""Batches read ahead per thread when ``prefetch_factor`` is not given (torch's default)."""


def _pin(batch: Any) -> Any:
    """Return ``batch`` with every tensor in page-locked memory (dicts, lists and tuples are walked)."""
    if isinstance(batch, Tensor):
        return batch.pin_memory()
    if isinstance(batch, Mapping):
        return {key: _pin(value) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_pin(value) for value in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(_pin(value) for value in batch)
    return batch


def _take(batches: Iterator[Any], n: int) -> list[Any]:
    """Return the next ``n`` (or fewer, at the end) items of ``batches``.

    Calls ``next`` only: ``itertools.islice`` calls ``iter`` again, which restarts batch
    samplers that are their own iterator (Lightning's prediction index wrapper).
    """
    taken = []
    for _ in range(n):
        try:
            taken.append(next(batches))
        except StopIteration:
            break
    return taken


class ThreadedDataLoader(DataLoader):
    """DataLoader that reads batches in a pool of threads and re-raises their exceptions.

    ``max(num_workers, 1)`` threads of this process read batches (``num_workers=0`` still
    reads in one background thread, overlapping reads with the training step); up to
    ``prefetch_factor`` batches per thread are read ahead, and batches are yielded in sampler
    order. An exception raised while reading a batch (in the dataset or ``collate_fn``) is
    re-raised in the iterating thread when that batch is due, so an epoch never ends early
    without an error. Stopping the iteration early cancels the batches not yet started.

    Use it for datasets whose reads release the GIL and are thread-safe (tensorstore,
    zarr): the threads share the dataset and its transforms, no worker process is started
    and nothing is pickled. Torch's process-worker options therefore do not apply:
    ``worker_init_fn``, ``multiprocessing_context`` and ``persistent_workers=True`` are
    refused (the threads start with each epoch, cheaply, and share the dataset, so there is
    nothing to keep alive between epochs), and random transforms inside the dataset draw
    from one shared generator (keep random augmentation on the device, after transfer, for
    reproducible runs with several threads).

    Everything else is :class:`torch.utils.data.DataLoader`: ``len``, ``batch_size``,
    ``sampler``, ``batch_sampler`` (for example a
    :class:`~viscy_data.sampler.FlexibleBatchSampler`), ``generator``, ``drop_last``,
    ``collate_fn`` and ``timeout`` (seconds to wait for one batch). A dataset with
    ``__getitems__`` is read a batch at a time through it, as torch does. With
    ``pin_memory`` (and CUDA available) batches are pinned in the iterating thread.

    Parameters
    ----------
    dataset : Dataset
        Map-style dataset.
    **kwargs
        :class:`torch.utils.data.DataLoader` arguments.

    Raises
    ------
    TypeError
        If ``dataset`` is an ``IterableDataset``.
    ValueError
        If ``worker_init_fn`` or ``multiprocessing_context`` is given, or ``persistent_workers`` is True.

    Examples
    --------
    >>> loader = ThreadedDataLoader(  # doctest: +SKIP
    ...     dataset, batch_sampler=sampler, num_workers=2, collate_fn=lambda batch: batch
    ... )
    >>> for batch in loader:  # a failed read raises here, in the training loop  # doctest: +SKIP
    ...     ...
    """

    def __init__(self, dataset: Dataset, **kwargs: Any) -> None:
        if isinstance(dataset, IterableDataset):
            raise TypeError(f"ThreadedDataLoader reads map-style datasets; got {type(dataset).__name__}.")
        for option in ("worker_init_fn", "multiprocessing_context"):
            if kwargs.get(option) is not None:
                raise ValueError(
                    f"ThreadedDataLoader reads in threads of this process and starts no worker process: "
                    f"{option} does not apply; got {kwargs[option]!r}."
                )
        if kwargs.get("persistent_workers"):
            raise ValueError(
                "ThreadedDataLoader reads in threads of this process, which share the dataset and start with each "
                "epoch at no cost: there are no worker processes to keep alive; leave persistent_workers False."
            )
        super().__init__(dataset, **kwargs)

    def _index_batches(self) -> Iterable[Any]:
        """Return the sampler of batch indices, or of single indices when batching is off (``batch_size=None``)."""
        return self.batch_sampler if self.batch_sampler is not None else self.sampler

    def _read(self, indices: Any) -> Any:
        """Read and collate one batch (runs in a pool thread)."""
        if self.batch_sampler is None:
            return self.collate_fn(self.dataset[indices])
        getitems = getattr(self.dataset, "__getitems__", None)
        items = getitems(indices) if getitems else [self.dataset[index] for index in indices]
        return self.collate_fn(items)

    def _next_batch(
        self, pending: deque[Future], batches: Iterator[Any], pool: ThreadPoolExecutor, timeout: float | None, pin: bool
    ) -> Any:
        """Wait for the oldest read, start the next one, and return the batch (pinned with ``pin``)."""
        batch = pending.popleft().result(timeout=timeout)
        for indices in _take(batches, 1):
            pending.append(pool.submit(self._read, indices))
        return _pin(batch) if pin else batch

    def __iter__(self) -> Iterator[Any]:
        """Yield batches in sampler order, re-raising any error of their reads."""
        n_threads = max(self.num_workers, 1)
        read_ahead = n_threads * (self.prefetch_factor or _DEFAULT_PREFETCH)
        pin = self.pin_memory and torch.cuda.is_available()
        timeout = self.timeout or None
        batches = iter(self._index_batches())
        pool = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix=type(self).__name__)
        pending: deque[Future] = deque()
        try:
            for indices in _take(batches, read_ahead):
                pending.append(pool.submit(self._read, indices))
            while pending:
                # no local holds the batch while the consumer has it: it lives as long as the consumer keeps
                # it, and the read arrays it uses can be reused as soon as it is dropped (PatchBuffers)
                yield self._next_batch(pending, batches, pool, timeout, pin)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
