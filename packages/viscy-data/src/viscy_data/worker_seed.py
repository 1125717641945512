"""New random draws in every DataLoader worker process and every epoch, reproducible from the loader's seed.

A random transform seeded once at construction (MONAI's ``Randomizable``,
``viscy_transforms.TorchRandomizable``) is copied into every worker process unchanged, and
into the new workers of every epoch: without reseeding, all workers and all epochs replay
the same augmentations. Torch seeds only its own and Python's global generators in a
worker, not the transforms' generators.

:class:`WorkerTransformSeeder` is the ``worker_init_fn`` the viscy-data modules give every
loader with worker processes. In a worker it reseeds each transform of the dataset through
its ``set_random_state`` (MONAI's ``Randomizable`` protocol; ``Compose`` passes derived
seeds on to its members) with seeds drawn from ``(torch.initial_seed(), rank)``. Torch
makes ``torch.initial_seed()`` in a worker ``base_seed + worker_id``, with ``base_seed``
drawn from the loader's ``generator`` each time an epoch's workers start. Hence:

- workers of one epoch, and ranks, draw different parameters;
- every epoch draws new parameters: non-persistent workers start again from a new
  ``base_seed``; persistent workers are reseeded once and their generators keep advancing;
- runs with the same loader seed (data module ``seed``) draw the same parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.utils import MAX_SEED
from torch.utils.data import Dataset, get_worker_info

__all__ = ["WorkerTransformSeeder", "current_rank", "reseed_transforms"]


def _random_transforms(root: Any) -> list[Any]:
    """Objects with ``set_random_state`` reachable from ``root``, in a fixed order, each once.

    ``root`` and every dataset found are searched through their attributes; an attribute
    that is a list, tuple or dict is searched one level deep (its items), so large index
    lists cost one type check per item.
    """
    found, seen = [], set()

    def visit(obj: Any, search_items: bool) -> None:
        if id(obj) in seen or isinstance(obj, str | bytes | int | float):
            return
        seen.add(id(obj))
        if callable(getattr(obj, "set_random_state", None)):
            found.append(obj)
        elif isinstance(obj, Dataset) or obj is root:
            for value in vars(obj).values() if hasattr(obj, "__dict__") else ():
                visit(value, search_items=True)
        elif search_items and isinstance(obj, list | tuple | Mapping):
            for item in obj.values() if isinstance(obj, Mapping) else obj:
                if not isinstance(item, list | tuple | Mapping):
                    visit(item, search_items=False)

    visit(root, search_items=True)
    return found


def reseed_transforms(root: Any, seed: int | Sequence[int]) -> int:
    """Reseed every random transform reachable from a dataset, deterministically from ``seed``.

    Parameters
    ----------
    root : Any
        A dataset (``ConcatDataset``, ``Subset`` and other wrappers are searched through).
        Its attributes, and lists, tuples and dicts among them, are searched for objects
        with a ``set_random_state`` method (``Compose`` reseeds its own members).
    seed : int or Sequence[int]
        Seed (``numpy.random.default_rng`` entropy) of the seeds handed out, in the order
        the transforms are found.

    Returns
    -------
    int
        The number of transforms reseeded (one shared by several attributes counts once).
    """
    transforms = _random_transforms(root)
    seeds = np.random.default_rng(seed).integers(MAX_SEED, size=len(transforms))
    for transform, transform_seed in zip(transforms, seeds, strict=True):
        transform.set_random_state(seed=int(transform_seed))
    return len(transforms)


def current_rank() -> int:
    """Global rank of this process in the default process group, 0 without one."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return torch.distributed.get_rank() if distributed else 0


class WorkerTransformSeeder:
    """``worker_init_fn`` reseeding the random transforms of the worker's dataset copy.

    Picklable, so it works with every multiprocessing start method. A loader given this
    ``worker_init_fn`` no longer gets Lightning's ``seed_everything(workers=True)`` worker
    init, which seeds numpy's global generator: viscy-data draws from no global generator.

    Parameters
    ----------
    rank : int
        Global rank of the process that owns the loader (see :func:`current_rank`); ranks
        whose loaders share one seed still draw different parameters.

    Examples
    --------
    >>> loader = DataLoader(  # doctest: +SKIP
    ...     dataset, num_workers=4, generator=torch.Generator().manual_seed(seed),
    ...     worker_init_fn=WorkerTransformSeeder(rank=current_rank()),
    ... )
    """

    def __init__(self, rank: int = 0) -> None:
        self.rank = rank

    def __call__(self, worker_id: int) -> None:
        """Reseed the dataset's transforms from ``(torch.initial_seed(), rank)``.

        Parameters
        ----------
        worker_id : int
            Worker index (already part of ``torch.initial_seed()``).

        Raises
        ------
        RuntimeError
            If called outside a DataLoader worker process.
        """
        info = get_worker_info()
        if info is None:
            raise RuntimeError("WorkerTransformSeeder must run as the worker_init_fn of a DataLoader worker.")
        reseed_transforms(info.dataset, seed=[torch.initial_seed(), self.rank])
