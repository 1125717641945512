"""``OnlineEvaluation``: representation-quality metrics of held-out cells, every few epochs of training.

The metrics themselves are the pure functions of :mod:`viscy_utils.evaluation.representation`;
this callback embeds the cells, gathers them over the DDP ranks, attaches their labels and logs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import RunningStage, TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.model_helpers import is_overridden

from viscy_utils.callbacks.embedding_writer import index_to_dataframe
from viscy_utils.evaluation._embeddings import INDEX_COLUMNS, require_columns
from viscy_utils.evaluation.representation import representation_metrics

__all__ = ["OnlineEvaluation", "gather_cells"]

_logger = logging.getLogger(__name__)

PREFIX = "online_eval"
"""Every metric is logged as ``online_eval/<name>``."""

FORWARD_PASSES_PER_TRAINED_ANCHOR = 6
"""Cost model of ``max_epoch_fraction``: a trained anchor costs the forward and backward passes (a backward
is about two forwards) of its two patches (anchor and positive), an evaluated cell one forward pass of one."""

_TRACK_COLUMNS = ("experiment", "fov_name", "track_id")
"""Columns that identify a track, those of them that the cells' index has (``fov_name`` and ``track_id`` at least)."""

_CELL_COLUMNS = (*_TRACK_COLUMNS, "t", "id")
"""Columns that identify a cell: the gathered cells are sorted by them and deduplicated on them."""

_MERGE_KEYS = ("fov_name", "track_id", "t")
"""Columns on which an annotations CSV is matched to the cells (with ``experiment`` when both have it)."""


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _split_output(output: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(features, projections or None)`` of what a module's ``forward`` returned."""
    if isinstance(output, torch.Tensor):
        return output, None
    if isinstance(output, dict):
        if "features" not in output:
            raise KeyError(f"The module's forward returned a dict without 'features': keys {sorted(output)}.")
        return output["features"], output.get("projections")
    if isinstance(output, Sequence) and output and isinstance(output[0], torch.Tensor):
        return output[0], output[1] if len(output) > 1 else None
    raise TypeError(
        "OnlineEvaluation needs the module's forward(x) to return embeddings: a tensor, (features, projections), "
        f"or a dict with 'features' (and 'projections'); got {type(output).__name__}."
    )


def gather_cells(
    features: np.ndarray, projections: np.ndarray | None, index: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray | None, pd.DataFrame]:
    """All ranks' cells on every rank, in one canonical order whatever the sharding.

    Every rank passes its own cells (any number, zero included); each gets back the cells of all
    ranks, sorted by their identifying columns (``experiment``, ``fov_name``, ``track_id``, ``t``,
    ``id``: those present) and with duplicates (e.g. the padding of a ``DistributedSampler``)
    dropped. Without an initialized process group of more than one rank, the cells are only
    sorted and deduplicated, so one process and several give the same arrays.

    Parameters
    ----------
    features : np.ndarray
        ``(N_rank, D)`` features of this rank's cells.
    projections : np.ndarray, optional
        ``(N_rank, P)`` projections.
    index : pd.DataFrame
        ``N_rank`` rows of tracking columns.

    Returns
    -------
    tuple
        ``(features, projections, index)`` of every cell; ``index`` has a fresh ``RangeIndex``.
    """
    local = (features, projections, index.reset_index(drop=True))
    if _distributed():
        gathered: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, local)
    else:
        gathered = [local]
    parts = [part for part in gathered if len(part[2])]
    if not parts:
        return features[:0], None if projections is None else projections[:0], index.iloc[:0].reset_index(drop=True)
    features = np.concatenate([part[0] for part in parts])
    projections = None if any(part[1] is None for part in parts) else np.concatenate([part[1] for part in parts])
    index = pd.concat([part[2] for part in parts], ignore_index=True)
    keys = [column for column in _CELL_COLUMNS if column in index.columns]
    if keys:
        order = index.sort_values(keys, kind="stable").index.to_numpy()
        index = index.iloc[order].reset_index(drop=True)
        features = features[order]
        projections = None if projections is None else projections[order]
        unique = ~index.duplicated(keys).to_numpy()
        index, features = index[unique].reset_index(drop=True), features[unique]
        projections = None if projections is None else projections[unique]
    return features, projections, index


class OnlineEvaluation(Callback):
    """Every ``every_n_epochs`` epochs, embed a fixed set of held-out cells and log how good the embeddings are.

    What is logged, as ``online_eval/<name>`` (see :func:`~viscy_utils.evaluation.representation.representation_metrics`
    for the definitions):

    - ``knn_accuracy/<label>``, ``linear_probe/<label>``: balanced accuracy of a cosine kNN vote
      (``k`` neighbors) and of a logistic-regression probe reading ``<label>`` from the features,
      each cell scored by a classifier fitted on the *other* half of the tracks (a seeded hash of
      the track key splits the tracks, never the frames of one track);
    - ``effective_rank/features``, ``effective_rank/projections``: 1 means collapse;
    - ``alignment`` (projections of consecutive frames of a track) and ``uniformity`` (projections);
    - ``temporal_smoothness``: cosine distance of consecutive frames of a track over that of random
      cell pairs (features);
    - ``cells``: how many cells were evaluated, ``seconds``: how long it took (the slowest rank).

    A metric that is undefined (e.g. a label with a single class among the cells) is not logged,
    with a warning the first time.

    Which cells: the data module must have a method ``online_evaluation_dataloader(max_cells, seed)``
    returning a loader of this rank's share of at most ``max_cells`` cells of its validation data,
    the same cells each time (e.g.
    :meth:`dynaclr.datamodule.MultiExperimentDataModule.online_evaluation_dataloader`), whose batches
    hold ``anchor`` patches and an ``index`` of tracking columns (``fov_name``, ``track_id``, ``t``;
    ``experiment`` and ``condition`` when known). Each batch goes through the data module's
    transfer hooks with the trainer in its *predicting* stage (normalized, never augmented nor
    channel-dropped), then through ``pl_module(anchor)`` in eval mode without gradients (the
    modules' train/eval modes are restored after). ``forward`` must return ``(features,
    projections)``, a features tensor, or a dict with ``features`` (and ``projections``).

    Labels: ``label_columns`` of the cells' index or of ``annotations_csv``, a CSV with
    ``fov_name``, ``track_id`` and ``t`` (and ``experiment``, matched too when the index has it).
    Cells whose label is missing, empty or ``unknown`` are left out of that label's scores. A run
    without labels still logs every label-free metric.

    DDP: every rank embeds its share, the cells of all ranks are gathered on every rank
    (:func:`gather_cells`, in a canonical order), the metrics are computed there, and rank 0's values
    are broadcast, so every rank logs the same values (``sync_dist`` with a max reduction).

    When: at the end of the validation that closes every ``every_n_epochs``-th training epoch,
    so that checkpointing and early stopping can monitor the metrics; at the end of the epoch
    when no validation ran (``val_experiments`` empty, ``check_val_every_n_epoch``). Never during
    the sanity check.

    Cost: reading and embedding the cells (one forward pass each), then the metrics on the CPU (about
    half a second for 2048 cells of 768 features on 2 cores; 0.03 s for a few dozen cells). The cells
    are at most ``max_cells``, and at most ``max_epoch_fraction`` of the epoch's training compute by
    the model under :data:`FORWARD_PASSES_PER_TRAINED_ANCHOR`: ``max_epoch_fraction * 6 *
    num_training_batches * batch_size * world_size`` (``batch_size`` read from the data module;
    without it, ``max_cells`` alone). That cap matters for short epochs only (the synthetic CPU
    configs); where reading patches dominates, a cell costs about half a trained anchor instead of a
    sixth. The seconds are logged as ``online_eval/seconds``.

    Parameters
    ----------
    every_n_epochs : int
        Evaluate after every this many training epochs.
    max_cells : int
        Most cells evaluated (all ranks together).
    max_epoch_fraction : float, optional
        Cap on the cells as a fraction of an epoch's training compute (see above); None for none.
    k : int
        Neighbors of the kNN vote.
    label_columns : list[str], optional
        Labels to score. Default: ``condition`` when the cells' index has it, and every column of
        ``annotations_csv`` that the index does not already have (e.g. ``infection_state``).
    annotations_csv : str, optional
        Per-cell annotations, matched on ``(fov_name, track_id, t)``.
    seed : int
        Seed of the cell selection and of the track split: the same every epoch, so that the curves
        follow one set of cells.

    Raises
    ------
    ValueError
        If a count or fraction is not positive.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        max_cells: int = 2048,
        max_epoch_fraction: float | None = 0.03,
        k: int = 20,
        label_columns: list[str] | None = None,
        annotations_csv: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("every_n_epochs", every_n_epochs), ("max_cells", max_cells), ("k", k)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}.")
        if max_epoch_fraction is not None and max_epoch_fraction <= 0:
            raise ValueError(f"max_epoch_fraction must be positive or None, got {max_epoch_fraction}.")
        self.every_n_epochs = every_n_epochs
        self.max_cells = max_cells
        self.max_epoch_fraction = max_epoch_fraction
        self.k = k
        self.label_columns = None if label_columns is None else list(label_columns)
        self.annotations_csv = annotations_csv
        self.seed = seed
        self._annotations: pd.DataFrame | None = None
        self._evaluated_epoch = -1
        self._warned: set[str] = set()

    # ---------------------------------------------------------------------------------------------
    # Lightning hooks

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Check, before training starts, that the data module provides the cells and that the annotations read."""
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        if not callable(getattr(datamodule, "online_evaluation_dataloader", None)):
            raise TypeError(
                f"OnlineEvaluation needs a data module with an online_evaluation_dataloader(max_cells, seed) method "
                f"(e.g. dynaclr.datamodule.MultiExperimentDataModule); {type(datamodule).__name__} has none. "
                "Remove the callback from trainer.callbacks, or add the method to the data module."
            )
        if self.annotations_csv is not None:
            self._annotations = _read_annotations(Path(self.annotations_csv))
        self._evaluated_epoch = -1

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Evaluate after the validation that ends a due epoch (not a mid-epoch one, not the sanity check)."""
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        if not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        self._maybe_evaluate(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Evaluate a due epoch that no validation closed."""
        self._maybe_evaluate(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        """Return the last evaluated epoch, so that a resumed run does not evaluate it again."""
        return {"evaluated_epoch": self._evaluated_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the last evaluated epoch."""
        self._evaluated_epoch = int(state_dict.get("evaluated_epoch", -1))

    # ---------------------------------------------------------------------------------------------

    def _maybe_evaluate(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs or epoch == self._evaluated_epoch:
            return
        self._evaluated_epoch = epoch
        start = time.perf_counter()
        loader = trainer.datamodule.online_evaluation_dataloader(max_cells=self.cell_budget(trainer), seed=self.seed)
        features, projections, index = self._embed(trainer, pl_module, loader)
        features, projections, index = gather_cells(features, projections, index)
        metrics = self._metrics(features, projections, index) if len(index) else {}
        if _distributed():
            shared = [metrics]
            torch.distributed.broadcast_object_list(shared, src=0)
            metrics = shared[0]
        seconds = time.perf_counter() - start
        metrics["seconds"] = seconds
        _logger.debug("Online evaluation of %d cells in epoch %d took %.2f s.", len(index), epoch, seconds)
        if not len(index):
            self._warn_once("cells", "OnlineEvaluation: the data module's online_evaluation_dataloader gave no cells.")
        for name, value in metrics.items():
            if math.isnan(value):
                self._warn_once(name, f"OnlineEvaluation: {PREFIX}/{name} is undefined for these cells; not logged.")
                continue
            pl_module.log(
                f"{PREFIX}/{name}", float(value), on_step=False, on_epoch=True, sync_dist=True, reduce_fx="max"
            )

    def cell_budget(self, trainer: Trainer) -> int:
        """Most cells to evaluate: ``max_cells``, capped by ``max_epoch_fraction`` of the epoch's training compute.

        Parameters
        ----------
        trainer : Trainer
            The running trainer (``num_training_batches``, ``world_size``, ``datamodule.batch_size``).

        Returns
        -------
        int
            At least 1.
        """
        budget = self.max_cells
        batch_size = getattr(trainer.datamodule, "batch_size", None)
        batches = trainer.num_training_batches
        if self.max_epoch_fraction is not None and isinstance(batch_size, int) and math.isfinite(batches):
            anchors = batches * batch_size * trainer.world_size
            budget = min(budget, int(self.max_epoch_fraction * FORWARD_PASSES_PER_TRAINED_ANCHOR * anchors))
        return max(budget, 1)

    def _embed(
        self, trainer: Trainer, pl_module: LightningModule, loader: Any
    ) -> tuple[np.ndarray, np.ndarray | None, pd.DataFrame]:
        """Features, projections and tracking index of this rank's cells, without augmentation or gradients."""
        datamodule = trainer.datamodule
        transfer = _hook("transfer_batch_to_device", datamodule, pl_module)
        after_transfer = _hook("on_after_batch_transfer", datamodule, pl_module)
        before_transfer = _hook("on_before_batch_transfer", datamodule, pl_module)
        features: list[np.ndarray] = []
        projections: list[np.ndarray] = []
        tables: list[pd.DataFrame] = []
        modes = {module: module.training for module in pl_module.modules()}
        stage = trainer.state.stage
        pl_module.eval()
        trainer.state.stage = RunningStage.PREDICTING  # data modules transform prediction batches without augmentation
        try:
            with torch.no_grad():
                for batch in loader:
                    index = batch["index"]
                    batch = after_transfer(transfer(before_transfer(batch, 0), pl_module.device, 0), 0)
                    with trainer.precision_plugin.forward_context():
                        batch_features, batch_projections = _split_output(pl_module(batch["anchor"]))
                    features.append(_to_numpy(batch_features.flatten(1)))
                    if batch_projections is not None:
                        projections.append(_to_numpy(batch_projections.flatten(1)))
                    tables.append(index_to_dataframe(index))
        finally:
            trainer.state.stage = stage
            for module, training in modes.items():
                module.training = training
        if not tables:
            return np.zeros((0, 0), dtype=np.float32), None, pd.DataFrame()
        index = pd.concat(tables, ignore_index=True)
        require_columns(index, ["fov_name", "track_id", "t"], what="online evaluation batches' index")
        return np.concatenate(features), np.concatenate(projections) if projections else None, index

    def _labels(self, index: pd.DataFrame) -> dict[str, np.ndarray]:
        """Label columns of the cells: from their index, or matched from the annotations CSV."""
        table = index
        annotation_columns: list[str] = []
        if self._annotations is not None:
            annotation_columns = [column for column in self._annotations.columns if column not in index.columns]
            table = _merge_annotations(index, self._annotations, annotation_columns)
        if self.label_columns is None:
            names = (["condition"] if "condition" in index.columns else []) + [
                column for column in annotation_columns if column not in (*INDEX_COLUMNS, "experiment")
            ]
        else:
            names = self.label_columns
            missing = [name for name in names if name not in table.columns]
            if missing:
                raise KeyError(
                    f"OnlineEvaluation label_columns {missing} are neither in the cells' index nor in annotations_csv "
                    f"{self.annotations_csv}; available: {sorted(set(table.columns) - set(INDEX_COLUMNS))}."
                )
        return {name: table[name].to_numpy(dtype=object) for name in names}

    def _metrics(self, features: np.ndarray, projections: np.ndarray | None, index: pd.DataFrame) -> dict[str, float]:
        track_columns = [column for column in _TRACK_COLUMNS if column in index.columns]
        return representation_metrics(
            features,
            projections,
            index,
            labels=self._labels(index),
            k=self.k,
            seed=self.seed,
            track_columns=track_columns,
        )

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(message)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _hook(name: str, datamodule: Any, pl_module: LightningModule) -> Any:
    """Return the data module's batch hook when it overrides it, else the module's (as Lightning chooses)."""
    if datamodule is not None and is_overridden(name, datamodule):
        return getattr(datamodule, name)
    return getattr(pl_module, name)


def _read_annotations(path: Path) -> pd.DataFrame:
    """Read an annotations CSV, checking its key columns and that no cell is annotated twice."""
    if not path.is_file():
        raise FileNotFoundError(f"OnlineEvaluation annotations_csv {path} does not exist.")
    table = pd.read_csv(path)
    require_columns(table, list(_MERGE_KEYS), what=f"annotations {path}")
    table["fov_name"] = table["fov_name"].astype(str).str.strip("/")
    keys = [*_MERGE_KEYS, *(["experiment"] if "experiment" in table.columns else [])]
    duplicated = table.duplicated(keys)
    if duplicated.any():
        raise ValueError(f"Annotations {path} annotate {int(duplicated.sum())} cells {keys} more than once.")
    return table


def _merge_annotations(index: pd.DataFrame, annotations: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Return the cells' index with the annotation ``columns`` of each cell (missing where none matches)."""
    keys = [*_MERGE_KEYS, *(["experiment"] if "experiment" in index.columns and "experiment" in annotations else [])]
    left = index[keys].astype({"fov_name": str, "track_id": np.int64, "t": np.int64})
    left["fov_name"] = left["fov_name"].str.strip("/")
    right = annotations[[*keys, *columns]].astype({"track_id": np.int64, "t": np.int64})
    if "experiment" in keys:
        left["experiment"] = left["experiment"].astype(str)
        right = right.astype({"experiment": str})
    merged = left.merge(right, on=keys, how="left", validate="many_to_one")
    return pd.concat([index.reset_index(drop=True), merged[columns]], axis=1)
