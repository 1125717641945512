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
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

__all__ = ["ThreadedDataLoader", "training_device"]

_DEFAULT_PREFETCH = 2
"""Batches read ahead per thread when ``prefetch_factor`` is not given (torch's default)."""


def _map_tensors(batch: Any, function: Callable[[Tensor], Any]) -> Any:
    """Return ``batch`` with ``function`` applied to every tensor (dicts, lists, tuples and named tuples are walked)."""
    if isinstance(batch, Tensor):
        return function(batch)
    if isinstance(batch, Mapping):
        return {key: _map_tensors(value, function) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_map_tensors(value, function) for value in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(_map_tensors(value, function) for value in batch)
    return batch


def _pin(batch: Any) -> Any:
    """Return ``batch`` with every tensor in page-locked memory (a tensor already there is kept as it is)."""
    return _map_tensors(batch, lambda tensor: tensor if tensor.is_pinned() else tensor.pin_memory())


class _DeviceCopy(NamedTuple):
    """A batch being copied to the device on a side stream: the copies, their pinned sources and the copy's end."""

    batch: Any
    host: Any
    done: Any


def training_device(trainer: Any) -> torch.device | None:
    """Return the CUDA device a Lightning trainer trains on, or None (no trainer, or not on CUDA).

    Parameters
    ----------
    trainer : lightning.pytorch.Trainer or None
        The data module's trainer (``LightningDataModule.trainer``).

    Returns
    -------
    torch.device or None
        What to pass as :class:`ThreadedDataLoader`'s ``copy_to``.
    """
    device = getattr(getattr(trainer, "strategy", None), "root_device", None)
    return device if isinstance(device, torch.device) and device.type == "cuda" else None


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

    With ``pin_memory`` and ``copy_to`` a CUDA device, each batch is also copied to that device by
    the thread that read it, asynchronously on a side stream, as soon as it is read: the copy
    overlaps the training steps before it. The iterating thread yields the device batch after
    making its current stream wait for exactly that batch's copy (no host synchronization), and
    keeps the pinned host batch alive until the copy has finished, so that its memory (a
    :class:`~viscy_data.patch_buffers.PatchBuffers` array) is not reused while the copy reads
    it. Lightning's transfer of an already-moved batch is free. Without CUDA, ``copy_to`` is
    ignored and batches stay on the host.

    Parameters
    ----------
    dataset : Dataset
        Map-style dataset.
    copy_to : torch.device, optional
        CUDA device to copy pinned batches to in the reading threads (e.g.
        :func:`training_device` of the data module's trainer).
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

    def __init__(self, dataset: Dataset, copy_to: torch.device | None = None, **kwargs: Any) -> None:
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
        self.copy_to = None if copy_to is None else torch.device(copy_to)

    def _index_batches(self) -> Iterable[Any]:
        """Return the sampler of batch indices, or of single indices when batching is off (``batch_size=None``)."""
        return self.batch_sampler if self.batch_sampler is not None else self.sampler

    def _read(self, indices: Any, stream: Any = None) -> Any:
        """Read and collate one batch, and start its copy on ``stream`` when given (runs in a pool thread)."""
        if self.batch_sampler is None:
            batch = self.collate_fn(self.dataset[indices])
        else:
            getitems = getattr(self.dataset, "__getitems__", None)
            batch = self.collate_fn(getitems(indices) if getitems else [self.dataset[index] for index in indices])
        if stream is None:
            return batch
        host = _pin(batch)
        with torch.cuda.stream(stream):
            copied = _map_tensors(host, lambda tensor: tensor.to(stream.device, non_blocking=True))
            done = torch.cuda.Event()
            done.record(stream)
        return _DeviceCopy(copied, host, done)

    def _next_batch(
        self,
        pending: deque[Future],
        batches: Iterator[Any],
        pool: ThreadPoolExecutor,
        timeout: float | None,
        pin: bool,
        stream: Any,
        copying: deque[_DeviceCopy],
    ) -> Any:
        """Wait for the oldest read, start the next one, and return the batch (pinned with ``pin``, or copied)."""
        batch = pending.popleft().result(timeout=timeout)
        for indices in _take(batches, 1):
            pending.append(pool.submit(self._read, indices, stream))
        if not isinstance(batch, _DeviceCopy):
            return _pin(batch) if pin else batch
        current = torch.cuda.current_stream(stream.device)
        current.wait_event(batch.done)
        # the copies were allocated on the side stream: tell the allocator they are used on this one
        _map_tensors(batch.batch, lambda tensor: tensor.record_stream(current))
        copying.append(batch._replace(batch=None))
        while copying and copying[0].done.query():  # copies done: their pinned arrays may be reused
            copying.popleft()
        return batch.batch

    def __iter__(self) -> Iterator[Any]:
        """Yield batches in sampler order, re-raising any error of their reads."""
        n_threads = max(self.num_workers, 1)
        read_ahead = n_threads * (self.prefetch_factor or _DEFAULT_PREFETCH)
        pin = self.pin_memory and torch.cuda.is_available()
        copy = pin and self.copy_to is not None and self.copy_to.type == "cuda"
        stream = torch.cuda.Stream(self.copy_to) if copy else None
        timeout = self.timeout or None
        batches = iter(self._index_batches())
        pool = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix=type(self).__name__)
        pending: deque[Future] = deque()
        copying: deque[_DeviceCopy] = deque()
        try:
            for indices in _take(batches, read_ahead):
                pending.append(pool.submit(self._read, indices, stream))
            while pending:
                # no local holds the batch while the consumer has it: it lives as long as the consumer keeps
                # it, and the read arrays it uses can be reused as soon as it is dropped (PatchBuffers)
                yield self._next_batch(pending, batches, pool, timeout, pin, stream, copying)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            for copy_in_flight in copying:
                copy_in_flight.done.synchronize()
