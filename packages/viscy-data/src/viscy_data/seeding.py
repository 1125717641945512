"""One seeding scheme for the random transforms of every data module.

Random transforms (MONAI's ``Randomizable``, ``viscy_transforms.TorchRandomizable``,
:class:`~viscy_data.channel_dropout.ChannelDropout`) own their generators. Seeded once, they
would replay or restart their streams: MONAI's ``Compose`` reseeds its members from OS entropy
when it is built, every DDP rank and DataLoader worker holds a copy of the same generator, and a
run resumed from a checkpoint starts the stream again. So the data modules reseed them, through
each transform's ``set_random_state(seed=...)`` (``Compose`` passes derived seeds on to its
members), with seeds that :class:`numpy.random.SeedSequence` derives from what identifies the
draws:

- **Augmentations of a batch** (after transfer, on the device: ``TripletDataModule``,
  ``GPUTransformDataModule`` and its subclasses, ``dynaclr``'s ``MultiExperimentDataModule`` and
  its ``ChannelDropout``): :func:`seed_transforms` before every batch, from
  ``(seed, epoch, rank, batch position)``, the position counted from 0 in each epoch. The draws of
  a batch then depend on nothing else: the same seed gives the same training, every rank and
  every batch its own draws, and a run resumed mid-epoch draws exactly what the uninterrupted run
  drew for the same batches. Modules with a plain DataLoader take the epoch and the position from
  Lightning's fit loop (see :class:`BatchSeeder`); validation batches (and those of the
  other evaluation loops) use a stream of their own, keyed the same way.
- **Per-sample CPU transforms in DataLoader worker processes** (e.g. ``HCSDataModule``):
  :class:`WorkerTransformSeeder`, the ``worker_init_fn`` of the viscy-data loaders, reseeds the
  worker's dataset copy once when the worker starts, from ``(loader base seed + worker id, rank)``.
  The loader draws its base seed from its generator (seeded by the data module's ``seed``) each
  time an epoch's workers start, so workers, ranks and epochs draw differently and the same seed
  gives the same run. A worker cannot be keyed by batch position like the batches above: it sees
  only item indices, never the epoch or the batch, its ``worker_init_fn`` runs once per run when
  workers persist, and Lightning restarts a plain DataLoader from its first batch on a mid-epoch
  resume, so a resumed run reads other items in the first place.

Both derive the seeds the same way (:func:`_reseed`): the random transforms reachable from a
root, found in a fixed order, get the successive words of ``SeedSequence(key)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

__all__ = ["BatchSeeder", "WorkerTransformSeeder", "current_rank", "seed_transforms"]

_VALIDATION_STREAM = (1,)
"""``SeedSequence`` spawn key of the draws of evaluation batches (training batches have none)."""
_WORKER_STREAM = (2,)
"""``SeedSequence`` spawn key of the draws of worker processes."""


def _random_transforms(root: Any) -> list[Any]:
    """Objects with ``set_random_state`` reachable from ``root``, in a fixed order, each once.

    ``root`` may be a transform, a list, tuple or dict of transforms, or a dataset. ``root`` and
    every dataset found are searched through their attributes; a list, tuple or dict (``root``
    itself or an attribute) is searched one level deep (its items), so large index lists cost one
    type check per item.
    """
    found, seen = [], set()

    def visit(obj: Any, search_items: bool) -> None:
        if id(obj) in seen or isinstance(obj, str | bytes | int | float):
            return
        seen.add(id(obj))
        if callable(getattr(obj, "set_random_state", None)):
            found.append(obj)
        elif isinstance(obj, list | tuple | Mapping):
            if search_items:
                for item in obj.values() if isinstance(obj, Mapping) else obj:
                    if not isinstance(item, list | tuple | Mapping):
                        visit(item, search_items=False)
        elif isinstance(obj, Dataset) or obj is root:
            for value in vars(obj).values() if hasattr(obj, "__dict__") else ():
                visit(value, search_items=True)

    visit(root, search_items=True)
    return found


def _reseed(root: Any, sequence: np.random.SeedSequence) -> int:
    """Give the random transforms reachable from ``root``, in order, the successive words of ``sequence``."""
    transforms = _random_transforms(root)
    for transform, seed in zip(transforms, sequence.generate_state(len(transforms)), strict=True):
        transform.set_random_state(seed=int(seed))
    return len(transforms)


def seed_transforms(
    transforms: Any, seed: int, epoch: int, rank: int, position: int, *, validation: bool = False
) -> int:
    """Seed the random transforms of one batch from ``(seed, epoch, rank, position)``.

    Call it right before the batch is transformed: its draws then depend only on these four
    numbers, so a run resumed mid-epoch repeats the uninterrupted run's draws.

    Parameters
    ----------
    transforms : Any
        A transform, a list, tuple or dict of transforms, or a dataset whose attributes hold them.
        Every object with a ``set_random_state`` method found there (one level deep in lists,
        tuples and dicts; datasets searched through) is reseeded, in the order found, with the
        successive words of ``numpy.random.SeedSequence((seed, epoch, rank, position))``.
        ``Compose`` reseeds its own members.
    seed : int
        The data module's seed (non-negative).
    epoch : int
        Training epoch, from 0.
    rank : int
        Global DDP rank, 0 without DDP.
    position : int
        Position of the batch in its epoch (on this rank), from 0.
    validation : bool
        Draw from the evaluation stream, for a validation (or test, predict) batch at ``position``
        of its loop: other draws than the training batch at the same position.

    Returns
    -------
    int
        The number of transforms reseeded (one reachable several ways counts once).

    Examples
    --------
    >>> from viscy_data.channel_dropout import ChannelDropout
    >>> dropout = ChannelDropout([0], p=0.5)
    >>> seed_transforms([dropout], seed=0, epoch=1, rank=0, position=7)
    1
    """
    spawn_key = _VALIDATION_STREAM if validation else ()
    return _reseed(transforms, np.random.SeedSequence((seed, epoch, rank, position), spawn_key=spawn_key))


def current_rank() -> int:
    """Global rank of this process in the default process group, 0 without one."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return torch.distributed.get_rank() if distributed else 0


def _batch_key(trainer: Any) -> tuple[int, int, int, bool]:
    """``(epoch, rank, position, validation)`` of the batch that ``trainer`` is transferring.

    Inside ``on_after_batch_transfer`` Lightning has not yet counted the batch (its loops call
    ``increment_ready`` after the transfer), so the ``ready`` count of the running loop's batch
    progress is the batch's position in its epoch; after a mid-epoch resume the fit loop restores
    that count to the batches completed before the checkpoint.
    """
    if trainer.training:
        loop = trainer.fit_loop.epoch_loop
    else:  # the evaluation loop of the running trainer function (fit's validation includes the sanity check)
        loops = {
            "fit": trainer.fit_loop.epoch_loop.val_loop,
            "validate": trainer.validate_loop,
            "test": trainer.test_loop,
            "predict": trainer.predict_loop,
        }
        loop = loops.get(getattr(trainer.state.fn, "value", None))
    position = loop.batch_progress.current.ready if loop is not None else 0
    return trainer.current_epoch, trainer.global_rank, position, not trainer.training


class BatchSeeder:
    """Seeds a data module's after-transfer transforms before each batch, by :func:`seed_transforms`.

    With a Lightning trainer the key is the trainer's: ``trainer.current_epoch``,
    ``trainer.global_rank`` and the ``ready`` count of the running loop's batch progress
    (``trainer.fit_loop.epoch_loop.batch_progress`` while training, the evaluation loop's otherwise,
    with ``validation=True``), which Lightning restores on a mid-epoch resume. Without one (a script
    calling ``on_after_batch_transfer`` itself), batches count as training batches ``0, 1, 2, ...``
    of epoch 0 on this process's rank, so successive batches draw differently and the same seed
    repeats the sequence.

    Examples
    --------
    >>> seeder = BatchSeeder()  # doctest: +SKIP
    >>> seeder(self._augmentation_transform, self.seed, self.trainer)  # in on_after_batch_transfer  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.batches_without_trainer = 0

    def __call__(self, transforms: Any, seed: int, trainer: Any) -> int:
        """Seed ``transforms`` for the batch being transferred now.

        Parameters
        ----------
        transforms : Any
            As in :func:`seed_transforms`.
        seed : int
            The data module's seed.
        trainer : lightning.pytorch.Trainer or None
            The data module's trainer, None when none is attached.

        Returns
        -------
        int
            The number of transforms reseeded.
        """
        if trainer is None:
            key = (0, current_rank(), self.batches_without_trainer, False)
            self.batches_without_trainer += 1
        else:
            key = _batch_key(trainer)
        epoch, rank, position, validation = key
        return seed_transforms(transforms, seed, epoch, rank, position, validation=validation)


class WorkerTransformSeeder:
    """``worker_init_fn`` reseeding the random transforms of the worker's dataset copy.

    Seeds are derived as in :func:`seed_transforms`, from ``(torch.initial_seed(), rank)``:
    torch makes ``torch.initial_seed()`` in a worker ``base_seed + worker_id``, with ``base_seed``
    drawn from the loader's ``generator`` each time an epoch's workers start. Hence workers of one
    epoch, and ranks, draw different parameters; every epoch draws new parameters (non-persistent
    workers start again from a new ``base_seed``; persistent workers are reseeded once and their
    generators keep advancing); runs with the same loader seed draw the same parameters.

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
        _reseed(info.dataset, np.random.SeedSequence((torch.initial_seed(), self.rank), spawn_key=_WORKER_STREAM))
