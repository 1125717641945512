"""``MultiExperimentDataModule``: multi-experiment contrastive training, validation and prediction.

Where each step of a batch runs:

1. *Which anchors* (CPU, main process): :class:`viscy_data.sampler.FlexibleBatchSampler`, sharded over the
   DDP ranks of the trainer.
2. *Read* (CPU, loader threads): :meth:`dynaclr.dataset.MultiExperimentTripletDataset.__getitems__` reads
   the anchor and positive patches of the whole batch with tensorstore, through
   :class:`viscy_data.thread_loader.ThreadedDataLoader` (identity collate: the batch is already a dict).
3. *Normalize, augment, crop, drop channels* (device, after transfer): :meth:`on_after_batch_transfer`
   runs ``normalizations`` and (training only) ``augmentations`` as dictionary transforms keyed by the
   model channel labels (``ch_0``, ``ch_1``... with positional channel alignment) in the order of
   :mod:`viscy_data.after_transfer`: normalize the read, spatial transforms down to the final centre crop
   (a random affine resamples straight into it), intensity transforms on the final patch; then (training
   only) :class:`viscy_data.channel_dropout.ChannelDropout`. A transform runs on the whole batch or
   sample by sample (each sample with its own random draw) as it declares
   (:func:`viscy_transforms.kinds.handles_batches`). The augmentations and the
   channel dropout of each training batch are seeded by ``(seed, epoch, rank, batch position)``, the scheme
   of every viscy-data module (:func:`viscy_data.seeding.seed_transforms`), with the epoch and position of
   the resumable sampler: the same config gives the same training, a resumed run the same draws as an
   uninterrupted one, and every rank its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from lightning.pytorch import LightningDataModule
from monai.data import MetaTensor
from monai.transforms import MapTransform
from torch import Tensor

from dynaclr.dataset import MultiExperimentTripletDataset
from dynaclr.experiment import ExperimentRegistry
from dynaclr.index import MultiExperimentIndex
from viscy_data import ChannelDropout, FlexibleBatchSampler
from viscy_data.after_transfer import after_transfer_pipeline, smallest_read_yx
from viscy_data.channel_wise import transform_channel_wise
from viscy_data.compatibility import accept_default_only
from viscy_data.seeding import seed_transforms
from viscy_data.thread_loader import ThreadedDataLoader, training_device

__all__ = ["MultiExperimentDataModule"]

_logger = logging.getLogger(__name__)

_PATCH_KEYS = ("anchor", "positive", "negative")


def _identity(batch: Any) -> Any:
    return batch


_HIDDEN_FROM_LIGHTNING = frozenset({"sampler", "batch_size", "drop_last"})
"""Sampler attributes the training loader's ``batch_sampler`` does not expose: with ``sampler``, Lightning would reset
a resumed position at each epoch start (``batch_sampler.sampler.set_epoch``); with ``batch_size`` and ``drop_last``,
a trainer left at ``use_distributed_sampler=True`` would try to rebuild the wrapper around a ``DistributedSampler``
and fail with a bare ``TypeError`` instead of Lightning's message naming ``use_distributed_sampler=False``."""


class _EpochBatches:
    """Batches of a FlexibleBatchSampler that tell the dataset their epoch, and count what training consumed.

    The sampler's public attributes read through this wrapper (``set_epoch``, ``experiment_aware``,
    ``num_replicas``...), so code written for a loader whose ``batch_sampler`` is the sampler itself
    (``trainer.train_dataloader.batch_sampler.set_epoch(epoch)``) works; ``epoch`` (the epoch in progress)
    and ``state_dict`` (counting the batches training consumed) are the wrapper's own. ``sampler``,
    ``batch_size`` and ``drop_last`` are deliberately not exposed (see ``_HIDDEN_FROM_LIGHTNING``); the
    sampler itself is ``flexible_sampler``.
    """

    def __init__(self, sampler: FlexibleBatchSampler, dataset: MultiExperimentTripletDataset) -> None:
        self.flexible_sampler = sampler
        self.dataset = dataset
        self.epoch = sampler.epoch
        self.consumed = 0
        self.started = False

    def __getattr__(self, name: str) -> Any:
        if name in _HIDDEN_FROM_LIGHTNING or name.startswith("_") or "flexible_sampler" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self.flexible_sampler, name)

    def __len__(self) -> int:
        return len(self.flexible_sampler)

    def __iter__(self) -> Iterator[list[int]]:
        batches = iter(self.flexible_sampler)
        state = self.flexible_sampler.state_dict()
        self.epoch, self.consumed, self.started = state["epoch"], state["batches_yielded"], True
        self.dataset.set_epoch(self.epoch)
        return batches

    def state_dict(self) -> dict[str, int]:
        """Sampler position counting the batches training consumed, not those prefetched."""
        if not self.started:
            return self.flexible_sampler.state_dict()
        replicas = self.flexible_sampler.num_replicas
        return {"epoch": self.epoch, "batches_yielded": self.consumed, "num_replicas": replicas}


class MultiExperimentDataModule(LightningDataModule):
    """Contrastive batches from several experiments, split by whole experiment.

    Parameters
    ----------
    experiments_yaml : str
        Experiments file read by :meth:`ExperimentRegistry.from_yaml`.
    z_range : tuple[int, int]
        Z slices ``[start, stop)`` of every patch.
    yx_patch_size : tuple[int, int]
        YX size read around each cell (room for augmentation).
    final_yx_patch_size : tuple[int, int]
        YX size after the final centre crop.
    val_experiments : list[str]
        Experiments held out for validation; the others train. Empty: no validation (warned).
    tau_range : tuple[float, float]
        Anchor-to-positive offset range in hours.
    tau_decay_rate : float
        Decay of the offsets' probabilities (0: uniform).
    batch_size : int
        Anchors per batch (per rank).
    num_workers : int
        Threads reading batches.
    experiment_aware, condition_balanced, leaky, temporal_enrichment, temporal_window_hours, \
temporal_global_fraction, experiment_weights, condition_ratio
        Sampling axes of :class:`~viscy_data.sampler.FlexibleBatchSampler`. Validation uses the same
        axes without temporal enrichment.
    channel_dropout_channels : list[int], optional
        Model channels that :class:`~viscy_data.channel_dropout.ChannelDropout` may zero; default ``[1]``.
    channel_dropout_prob : float
        Probability of zeroing each listed channel of each training sample.
    normalizations : list[MapTransform], optional
        Batched transforms for every batch, keyed by the model channel labels.
    augmentations : list[MapTransform], optional
        Batched random transforms for training batches only.
    hcl_beta : float
        Accepted for reference configs; only the default ``0.5`` is accepted: the hard-negative
        weight is the model's, ``model.loss_function: dynaclr.loss.NTXentHCL(beta=...)``.
    cache_pool_bytes : int
        Tensorstore chunk cache size.
    seed : int
        Seed of the sampler, of the positive draws and of the channel dropout.
    include_wells : list[str], optional
        Wells to use, in every experiment.
    exclude_fovs : list[str], optional
        FOVs to leave out, in every experiment.
    training_channels : {"shared", "all"} or list[str], optional
        Channel resolution of the registry (None: by position).
    predict_experiments : list[str], optional
        Experiments whose every cell the ``predict`` stage embeds, in order; default all.
    max_border_shift : int, optional
        Largest inward shift, in pixels, of a border cell's patch centre; cells needing more are dropped
        (counted in a warning). Default None: no limit, every cell whose centre is inside its image is kept
        (see :class:`~dynaclr.index.MultiExperimentIndex`).
    return_negative : bool
        Also read a ``negative`` per anchor (for triplet losses).
    pin_memory : bool
        Read batches into page-locked memory; when training on CUDA, the loader threads then copy
        each batch to the GPU asynchronously on a side stream, overlapping the steps before it
        (:class:`~viscy_data.thread_loader.ThreadedDataLoader`'s ``copy_to``).
    prefetch_factor : int, optional
        Batches read ahead per loader thread.

    Notes
    -----
    The DataModule's ``state_dict`` carries the training sampler's position (epoch and batches
    consumed by training steps), so a run resumed from a mid-epoch checkpoint (``ckpt_path``, SLURM
    requeue) trains on exactly the batches of that epoch it had not seen.

    The training and validation samplers shard the batches over the DDP ranks themselves, so the trainer
    must not inject its own ``DistributedSampler``: set ``trainer.use_distributed_sampler: false`` (as
    ``examples/configs/multi_experiment_fit.yml`` does); otherwise Lightning stops with a message naming
    that setting.
    """

    def __init__(
        self,
        experiments_yaml: str,
        z_range: tuple[int, int],
        yx_patch_size: tuple[int, int],
        final_yx_patch_size: tuple[int, int],
        val_experiments: list[str],
        tau_range: tuple[float, float] = (0.5, 2.0),
        tau_decay_rate: float = 2.0,
        batch_size: int = 128,
        num_workers: int = 1,
        experiment_aware: bool = True,
        condition_balanced: bool = True,
        leaky: float = 0.0,
        temporal_enrichment: bool = False,
        temporal_window_hours: float = 2.0,
        temporal_global_fraction: float = 0.3,
        experiment_weights: dict[str, float] | None = None,
        condition_ratio: dict[str, float] | None = None,
        channel_dropout_channels: list[int] | None = None,
        channel_dropout_prob: float = 0.5,
        normalizations: list[MapTransform] | None = None,
        augmentations: list[MapTransform] | None = None,
        hcl_beta: float = 0.5,
        cache_pool_bytes: int = 0,
        seed: int = 0,
        include_wells: list[str] | None = None,
        exclude_fovs: list[str] | None = None,
        training_channels: str | list[str] | None = None,
        predict_experiments: list[str] | None = None,
        max_border_shift: int | None = None,
        return_negative: bool = False,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
    ) -> None:
        super().__init__()
        accept_default_only(
            "hcl_beta", hcl_beta, 0.5, "set beta on the model's loss_function: dynaclr.loss.NTXentHCL(beta=...)"
        )
        self.experiments_yaml = experiments_yaml
        self.z_range = tuple(z_range)
        self.yx_patch_size = tuple(yx_patch_size)
        self.final_yx_patch_size = tuple(final_yx_patch_size)
        self.val_experiments = list(val_experiments or [])
        self.tau_range = tuple(tau_range)
        self.tau_decay_rate = tau_decay_rate
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.experiment_aware = experiment_aware
        self.condition_balanced = condition_balanced
        self.leaky = leaky
        self.temporal_enrichment = temporal_enrichment
        self.temporal_window_hours = temporal_window_hours
        self.temporal_global_fraction = temporal_global_fraction
        self.experiment_weights = experiment_weights
        self.condition_ratio = condition_ratio
        self.channel_dropout_channels = [1] if channel_dropout_channels is None else list(channel_dropout_channels)
        self.channel_dropout_prob = channel_dropout_prob
        self.normalizations = list(normalizations or [])
        self.augmentations = list(augmentations or [])
        self.hcl_beta = hcl_beta
        self.cache_pool_bytes = cache_pool_bytes
        self.seed = seed
        self.include_wells = include_wells
        self.exclude_fovs = exclude_fovs
        self.training_channels = training_channels
        self.predict_experiments = predict_experiments
        self.max_border_shift = max_border_shift
        self.return_negative = return_negative
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor
        if len(self.final_yx_patch_size) != 2 or any(
            final > read for final, read in zip(self.final_yx_patch_size, self.yx_patch_size, strict=True)
        ):
            raise ValueError(
                f"final_yx_patch_size {self.final_yx_patch_size} must be (height, width) no larger than "
                f"yx_patch_size {self.yx_patch_size}."
            )
        self.channel_dropout = ChannelDropout(self.channel_dropout_channels, p=channel_dropout_prob, seed=seed)
        self.train_dataset: MultiExperimentTripletDataset | None = None
        self.val_dataset: MultiExperimentTripletDataset | None = None
        self.predict_dataset: MultiExperimentTripletDataset | None = None
        self._train_batches: _EpochBatches | None = None
        self._sampler_state: Mapping[str, int] | None = None
        self._channel_names: list[str] = []
        self._read_yx_patch_size: tuple[int, int] | None = None

    def setup(self, stage: str | None = None) -> None:
        """Build the registry, the indices and the datasets of ``stage`` (fit, validate or predict).

        Raises
        ------
        ValueError
            If ``val_experiments`` names unknown experiments or leaves none to train on, or
            ``predict_experiments`` names unknown ones.
        NotImplementedError
            For the ``test`` stage.
        """
        registry = ExperimentRegistry.from_yaml(self.experiments_yaml, training_channels=self.training_channels)
        self._channel_names = list(registry.active_channels)
        self._build_transforms()
        if stage in ("fit", "validate", None):
            unknown = sorted(set(self.val_experiments) - set(registry.names))
            if unknown:
                raise ValueError(f"val_experiments {unknown} are not in {self.experiments_yaml}: {registry.names}.")
            train = [name for name in registry.names if name not in self.val_experiments]
            if not train:
                raise ValueError(
                    f"No training experiments remaining: val_experiments {self.val_experiments} holds every "
                    f"experiment of {self.experiments_yaml}."
                )
            if stage != "validate":
                self.train_dataset = self._dataset(registry, train, fit=True)
            if self.val_experiments:
                self.val_dataset = self._dataset(registry, self.val_experiments, fit=True)
            else:
                _logger.warning("val_experiments is empty: training runs without validation.")
        elif stage == "predict":
            names = registry.names if self.predict_experiments is None else list(self.predict_experiments)
            unknown = sorted(set(names) - set(registry.names))
            if unknown:
                raise ValueError(f"predict_experiments {unknown} are not in {self.experiments_yaml}: {registry.names}.")
            self.predict_dataset = self._dataset(registry, names, fit=False)
        else:
            raise NotImplementedError(f"MultiExperimentDataModule has no {stage!r} stage: use fit, validate, predict.")

    def _dataset(self, registry: ExperimentRegistry, names: Sequence[str], fit: bool) -> MultiExperimentTripletDataset:
        subset = registry.subset(names)
        index = MultiExperimentIndex(
            subset,
            z_range=self.z_range,
            yx_patch_size=self.yx_patch_size,
            tau_range_hours=self.tau_range,
            include_wells=self.include_wells,
            exclude_fovs=self.exclude_fovs,
            max_border_shift=self.max_border_shift,
        )
        _logger.info("%s", index.summary())
        return MultiExperimentTripletDataset(
            index,
            fit=fit,
            tau_range_hours=self.tau_range,
            tau_decay_rate=self.tau_decay_rate,
            return_negative=self.return_negative and fit,
            cache_pool_bytes=self.cache_pool_bytes,
            seed=self.seed,
            read_yx_patch_size=self._read_yx_patch_size,
            pin_memory=self.pin_memory,
        )

    def _build_transforms(self) -> None:
        z_size = self.z_range[1] - self.z_range[0]
        crop = {"crop_keys": self._channel_names, "crop_size": (z_size, *self.final_yx_patch_size)}
        self._augmentation_transform = after_transfer_pipeline([*self.normalizations, *self.augmentations], **crop)
        self._no_augmentation_transform = after_transfer_pipeline(self.normalizations, **crop)
        read = smallest_read_yx(self._augmentation_transform, self.yx_patch_size, z_size)
        if read != tuple(self.yx_patch_size) and read != self._read_yx_patch_size:
            _logger.info(
                "Reading %s around each cell instead of yx_patch_size %s: the augmentations sample nothing outside "
                "it (percentiles of a percentile normalization are taken over this smaller region).",
                read,
                tuple(self.yx_patch_size),
            )
        self._read_yx_patch_size = read

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _sampler(self, dataset: MultiExperimentTripletDataset, training: bool) -> FlexibleBatchSampler:
        world_size, rank = self._rank()
        dataset.rank = rank
        several = len(dataset.index.registry.experiments) > 1
        return FlexibleBatchSampler(
            dataset.index.valid_anchors,
            batch_size=self.batch_size,
            experiment_aware=self.experiment_aware,
            leaky=self.leaky if training or several else 0.0,
            experiment_weights=self.experiment_weights if training else None,
            condition_balanced=self.condition_balanced,
            condition_ratio=self.condition_ratio,
            temporal_enrichment=self.temporal_enrichment and training,
            temporal_window_hours=self.temporal_window_hours,
            temporal_global_fraction=self.temporal_global_fraction,
            num_replicas=world_size,
            rank=rank,
            seed=self.seed,
            drop_last=training,
        )

    def _loader(self, dataset: MultiExperimentTripletDataset, **kwargs: Any) -> ThreadedDataLoader:
        return ThreadedDataLoader(
            dataset,
            num_workers=self.num_workers,
            collate_fn=_identity,
            pin_memory=self.pin_memory,
            copy_to=training_device(self.trainer),
            prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None,
            **kwargs,
        )

    def train_dataloader(self) -> ThreadedDataLoader:
        """Return training batches from the FlexibleBatchSampler, resumed at a loaded position."""
        if self.train_dataset is None:
            raise RuntimeError("Call setup('fit') before train_dataloader().")
        sampler = self._sampler(self.train_dataset, training=True)
        if self._sampler_state is not None:
            sampler.load_state_dict(self._sampler_state)
            self._sampler_state = None
        self._train_batches = _EpochBatches(sampler, self.train_dataset)
        return self._loader(self.train_dataset, batch_sampler=self._train_batches)

    def val_dataloader(self) -> ThreadedDataLoader | list:
        """Return validation batches: the training axes without temporal enrichment; none without val experiments."""
        if self.val_dataset is None:
            return []
        sampler = self._sampler(self.val_dataset, training=False)
        return self._loader(self.val_dataset, batch_sampler=_EpochBatches(sampler, self.val_dataset))

    def predict_dataloader(self) -> ThreadedDataLoader:
        """Return every cell of ``predict_experiments``, in index order."""
        if self.predict_dataset is None:
            raise RuntimeError("Call setup('predict') before predict_dataloader().")
        return self._loader(self.predict_dataset, batch_size=self.batch_size, shuffle=False, drop_last=False)

    def online_evaluation_dataloader(self, max_cells: int = 2048, seed: int = 0) -> ThreadedDataLoader:
        """Return this rank's share of a fixed set of validation cells, for ``viscy_utils.callbacks.OnlineEvaluation``.

        The cells are at most ``max_cells`` rows of the ``val_experiments`` (of every experiment when there
        are none), spread over as many tracks as possible with consecutive frames of each
        (:func:`viscy_utils.evaluation.representation.select_track_windows`, seeded by ``seed``): the
        same cells at every call. The ranks split them without overlap. Batches are prediction batches:
        ``anchor`` patches only, with an ``index`` of :data:`dynaclr.dataset.PREDICT_INDEX_COLUMNS`;
        :meth:`on_after_batch_transfer` normalizes them without augmentation or channel dropout whenever
        the trainer is not training (the callback runs them in the predicting stage).

        Parameters
        ----------
        max_cells : int
            Most cells, all ranks together.
        seed : int
            Seed of the cell selection.

        Returns
        -------
        ThreadedDataLoader
            Batches of at most ``2 * batch_size`` cells (one view without gradients takes less memory than a
            training batch of ``batch_size`` anchors and positives).
        """
        from viscy_utils.evaluation.representation import select_track_windows

        cached = getattr(self, "_online_evaluation", None)
        if cached is None:  # the index of the validation experiments, built once
            registry = ExperimentRegistry.from_yaml(self.experiments_yaml, training_channels=self.training_channels)
            if not self._channel_names:
                self._channel_names = list(registry.active_channels)
                self._build_transforms()
            cached = self._online_evaluation = {
                "dataset": self._dataset(registry, self.val_experiments or registry.names, fit=False)
            }
        dataset = cached["dataset"]
        if cached.get("selection") != (max_cells, seed):
            tracks = dataset.index.tracks
            rows = select_track_windows(tracks, max_cells, seed, track_columns=("experiment", "fov_name", "track_id"))
            cached.update(selection=(max_cells, seed), rows=rows)
        world_size, rank = self._rank()
        mine = cached["rows"][rank::world_size]
        size = 2 * self.batch_size  # one view and no gradients: less memory than a training batch
        batches = [mine[start : start + size].tolist() for start in range(0, len(mine), size)]
        return self._loader(dataset, batch_sampler=batches)

    def state_dict(self) -> dict[str, Any]:
        """Position of the training sampler: ``{"sampler": {epoch, batches_yielded, num_replicas}}``."""
        if self._train_batches is not None:
            state = self._train_batches.state_dict()
            state["batches_yielded"] -= self._batches_in_flight()
            return {"sampler": state}
        return {"sampler": dict(self._sampler_state)} if self._sampler_state is not None else {}

    def _batches_in_flight(self) -> int:
        """Count the batches transferred for training whose step has not finished (1 when saving on an interruption).

        A checkpoint written while a step runs (Ctrl-C, SIGTERM, a failure: ``ResumableCheckpoint``) records the
        loop's progress without that step, whose batch ``on_after_batch_transfer`` already counted as consumed;
        Lightning counts a batch as ready right after its transfer and as processed after its step.
        """
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return 0
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        return progress.ready - progress.processed

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the training sampler at a saved position (applied when the training loader is built)."""
        state = state_dict.get("sampler")
        if state is None:
            return
        if self._train_batches is not None:
            self._train_batches.flexible_sampler.load_state_dict(state)
        else:
            self._sampler_state = dict(state)

    def on_after_batch_transfer(self, batch: dict[str, Any] | Tensor, dataloader_idx: int) -> dict[str, Any] | Tensor:
        """Normalize, augment (training only), crop and drop channels (training only), on the device."""
        if isinstance(batch, Tensor):
            return batch
        trainer = self.trainer
        training = trainer is not None and trainer.training
        counted = training and not trainer.sanity_checking and self._train_batches is not None
        if counted:
            # the sampler's own epoch and count of consumed batches: they resume with it
            random_transforms = [self.channel_dropout, *self.augmentations]
            _, rank = self._rank()
            seed_transforms(random_transforms, self.seed, self._train_batches.epoch, rank, self._train_batches.consumed)
        transform = self._augmentation_transform if training else self._no_augmentation_transform
        for key in _PATCH_KEYS:
            if key not in batch:
                continue
            patches = transform_channel_wise(transform, self._channel_names, batch[key], batch.pop(f"{key}_norm_meta"))
            if isinstance(patches, MetaTensor):
                patches = patches.as_tensor()
            batch[key] = self.channel_dropout.train(training)(patches) if key != "negative" else patches
        if counted:  # last, so that a batch whose transforms failed is not counted
            self._train_batches.consumed += 1
        return batch
