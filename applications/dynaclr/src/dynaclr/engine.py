"""``ContrastiveModule``: self-supervised contrastive training of a cell-patch encoder.

``BetaVaeModule`` (defined in :mod:`dynaclr.vae`) is also importable from here, the path that
existing configs name (``class_path: dynaclr.engine.BetaVaeModule``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict

import torch
from lightning.pytorch import LightningModule
from pytorch_metric_learning.losses import NTXentLoss
from torch import Tensor, nn

from dynaclr._distributed import gather_rows, world_size
from dynaclr._image_logging import log_epoch_samples
from dynaclr._loss_logging import log_loss
from dynaclr._optim import SCHEDULES, Schedule, configure_adamw
from dynaclr.vae import BetaVaeModule
from viscy_data import TrackingIndex
from viscy_data.compatibility import accept_default_only
from viscy_utils.log_images import detach_sample

__all__ = ["BetaVaeModule", "ContrastiveModule", "ContrastivePrediction"]

_EMBEDDINGS_INSTEAD = (
    "embeddings are not logged during training; write them with `dynaclr predict` and the "
    "viscy_utils.callbacks.EmbeddingWriter callback (see examples/configs/predict.yml)"
)
"""What the refusal of the reference's unused embedding-logging arguments names instead."""

_LINEAGE_NOT_EXCLUDED = (
    "the loss gathers the ranks' embeddings itself (gather_distributed=True), so rows of an anchor's own "
    "lineage stay among its negatives; set gather_distributed: false and let ContrastiveModule gather "
    "(all_gather_negatives: true, the default) to leave them out"
)
"""Warning of a self-gathering loss under DDP, which cannot leave same-lineage negatives out."""


class ContrastivePrediction(TypedDict):
    """What :meth:`ContrastiveModule.predict_step` returns, as :class:`~viscy_utils.callbacks.EmbeddingWriter` reads it.

    Attributes
    ----------
    features : Tensor
        Backbone embeddings ``(B, D_features)``.
    projections : Tensor
        Projection-head outputs ``(B, D_projection)``.
    index : TrackingIndex
        Tracking columns of each cell (``fov_name``, ``track_id``, ``t``, ``id``...).
    """

    features: Tensor
    projections: Tensor
    index: TrackingIndex


def uses_in_batch_negatives(loss_function: nn.Module) -> bool:
    """Whether a loss takes its negatives from the batch (NT-Xent and its subclasses, such as NTXentHCL).

    Parameters
    ----------
    loss_function : nn.Module
        The contrastive loss.

    Returns
    -------
    bool
        True for pytorch-metric-learning ``NTXentLoss`` and subclasses; such losses are called as
        ``loss(embeddings (2B, D), labels (2B,))``. Others are called as ``loss(anchor, positive, negative)``.
    """
    return isinstance(loss_function, NTXentLoss)


def ntxent_labels(batch_size: int, device: torch.device) -> Tensor:
    """Labels that pair row ``i`` of ``cat(anchor, positive)`` with row ``i + batch_size``.

    Parameters
    ----------
    batch_size : int
        Anchors in the batch.
    device : torch.device
        Device of the labels.

    Returns
    -------
    Tensor
        ``cat(arange(B), arange(B))``.
    """
    indices = torch.arange(batch_size, device=device)
    return torch.cat([indices, indices])


def ntxent_pairs(lineage: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """NT-Xent pairs of ``cat(anchor, positive)`` in which no row is a negative of its own lineage.

    Row ``i`` and row ``i + B`` are the positive pair (both ways); every row of another lineage
    is a negative. Rows of the same lineage (the same cell at other time points, or its relatives)
    are neither: they are not the positive of the pair, but treating them as negatives would push
    a cell away from itself.

    Parameters
    ----------
    lineage : Tensor
        ``(B,)`` integer lineage of each anchor (its positive has the same).

    Returns
    -------
    tuple of Tensor
        ``(anchors, positives, negative_anchors, negatives)`` row indices into the ``2B`` rows,
        pytorch-metric-learning's ``indices_tuple`` of pairs.
    """
    pair = ntxent_labels(lineage.shape[0], lineage.device)
    same_pair = pair[:, None] == pair[None, :]
    same_pair.fill_diagonal_(False)
    anchors, positives = torch.nonzero(same_pair, as_tuple=True)
    negative_anchors, negatives = torch.nonzero(ntxent_negative_mask(lineage), as_tuple=True)
    return anchors, positives, negative_anchors, negatives


def ntxent_negative_mask(lineage: Tensor) -> Tensor:
    """Which rows of ``cat(anchor, positive)`` are negatives of which: those of another lineage.

    Parameters
    ----------
    lineage : Tensor
        ``(B,)`` integer lineage of each anchor (its positive has the same); ``arange(B)`` makes every
        row but a row's own pair a negative.

    Returns
    -------
    Tensor
        ``(2B, 2B)`` bool, True where column ``j`` is a negative of row ``i``.
    """
    rows_lineage = torch.cat([lineage, lineage])
    return rows_lineage[:, None] != rows_lineage[None, :]


class ContrastiveModule(LightningModule):
    """Contrastive learning of cell embeddings from anchor/positive(/negative) patch batches.

    The batch is a dict with ``anchor`` and ``positive`` tensors ``(B, C, Z, Y, X)`` (and
    ``negative`` for losses that need explicit negatives), already normalized and augmented by
    the data module. Only the projections enter the loss:

    - NT-Xent-type losses (pytorch-metric-learning ``NTXentLoss`` and subclasses, e.g.
      :class:`dynaclr.loss.NTXentHCL`) take ``cat(anchor, positive)`` with labels pairing
      ``i`` and ``i + B``; every other sample of the batch is a negative, except, when the
      batch carries ``lineage`` (both triplet data modules' training batches do), the samples of
      the anchor's own lineage (:func:`ntxent_pairs`). Under DDP the projections (and lineages)
      of all ranks are gathered first (``all_gather_negatives``), so each anchor sees the
      negatives of the global batch, as on one device; a loss that gathers itself
      (``NTXentHCL(gather_distributed=True)``) gets the labels only.
    - Any other loss (e.g. ``nn.TripletMarginLoss``) is called as
      ``loss(anchor, positive, negative)``.

    Parameters
    ----------
    encoder : nn.Module
        Returns ``(features, projections)`` for a ``(B, C, Z, Y, X)`` batch, e.g.
        :class:`viscy_models.contrastive.ContrastiveEncoder`. Stored as ``self.model``, so
        checkpoint keys are ``model.*``.
    loss_function : nn.Module, optional
        Contrastive loss; default a new ``nn.TripletMarginLoss(margin=0.5)`` per module.
    lr : float
        AdamW learning rate.
    schedule : {"Constant", "WarmupCosine"}
        ``"WarmupCosine"``: linear warm-up over ``warmup_epochs`` epochs, then cosine decay to
        zero at ``trainer.max_epochs`` (stepped every epoch).
    log_batches_per_epoch : int
        Batches per epoch whose samples are kept for the image grid.
    log_samples_per_batch : int
        Samples kept from each of those batches.
    log_embeddings : bool
        Accepted for reference configs; only the default ``False`` is accepted (the reference never
        used it): write embeddings with ``dynaclr predict`` and the
        :class:`~viscy_utils.callbacks.EmbeddingWriter` callback.
    log_negative_metrics_every_n_epochs : int
        With an NT-Xent-type loss, every this many epochs also log in-batch negative similarity
        and distance metrics.
    example_input_array_shape : Sequence[int]
        Shape of ``example_input_array`` (used for graph logging and ONNX export).
    ckpt_path : str, optional
        Checkpoint whose ``state_dict`` is loaded strictly at construction.
    warmup_epochs : int
        Warm-up epochs of the ``"WarmupCosine"`` schedule.
    all_gather_negatives : bool
        Under DDP, gather projections from every rank for NT-Xent-type losses. Skipped when
        the loss gathers them itself (``NTXentHCL(gather_distributed=True)``).

    Raises
    ------
    ValueError
        If ``schedule`` is unknown, ``log_negative_metrics_every_n_epochs`` is not positive, or
        ``log_embeddings`` is True.
    """

    def __init__(
        self,
        encoder: nn.Module,
        loss_function: nn.Module | None = None,
        lr: float = 1e-3,
        schedule: Schedule = "Constant",
        log_batches_per_epoch: int = 8,
        log_samples_per_batch: int = 1,
        log_embeddings: bool = False,
        log_negative_metrics_every_n_epochs: int = 2,
        example_input_array_shape: Sequence[int] = (1, 2, 15, 256, 256),
        ckpt_path: str | None = None,
        warmup_epochs: int = 3,
        all_gather_negatives: bool = True,
    ) -> None:
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule {schedule!r} is not one of {list(SCHEDULES)}.")
        if log_negative_metrics_every_n_epochs < 1:
            raise ValueError(
                f"log_negative_metrics_every_n_epochs must be >= 1, got {log_negative_metrics_every_n_epochs}."
            )
        accept_default_only("log_embeddings", log_embeddings, False, _EMBEDDINGS_INSTEAD)
        self.model = encoder
        self.loss_function = nn.TripletMarginLoss(margin=0.5) if loss_function is None else loss_function
        self.lr = lr
        self.schedule = schedule
        self.warmup_epochs = warmup_epochs
        self.log_batches_per_epoch = log_batches_per_epoch
        self.log_samples_per_batch = log_samples_per_batch
        self.log_negative_metrics_every_n_epochs = log_negative_metrics_every_n_epochs
        self.all_gather_negatives = all_gather_negatives
        self.example_input_array = torch.zeros(tuple(example_input_array_shape))
        self.training_step_outputs: list[list[Any]] = []
        self.validation_step_outputs: list[list[Any]] = []
        if ckpt_path is not None:
            self.load_state_dict(torch.load(Path(ckpt_path), weights_only=True, map_location="cpu")["state_dict"])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(features, projections)`` of a ``(B, C, Z, Y, X)`` batch."""
        return self.model(x)

    def _loss_gathers_ranks(self) -> bool:
        """Whether the loss gathers the ranks' rows itself (``NTXentHCL(gather_distributed=True)`` under DDP)."""
        return getattr(self.loss_function, "gather_distributed", False) and world_size() > 1

    def _gather(self, rows: Tensor) -> Tensor:
        """Concatenate the rows of every rank (gradients flow back to each rank's own rows)."""
        if not self.all_gather_negatives or self._loss_gathers_ranks() or world_size() == 1:
            return rows
        return gather_rows(rows)

    def _contrastive_loss(
        self, anchor: Tensor, positive: Tensor, negative: Tensor | None, lineage: Tensor | None = None
    ) -> Tensor:
        if uses_in_batch_negatives(self.loss_function):
            anchor_all, positive_all = self._gather(anchor), self._gather(positive)
            embeddings = torch.cat([anchor_all, positive_all])
            labels = ntxent_labels(anchor_all.shape[0], anchor.device)
            if lineage is not None and self._loss_gathers_ranks():
                warnings.warn(_LINEAGE_NOT_EXCLUDED, stacklevel=2)
            if lineage is None or self._loss_gathers_ranks():
                return self.loss_function(embeddings, labels)
            return self.loss_function(embeddings, labels, ntxent_pairs(self._gather(lineage.to(anchor.device))))
        if negative is None:
            raise ValueError(
                f"{type(self.loss_function).__name__} needs negatives, but the batch has no 'negative' key: "
                "set the data module's return_negative: true, or use an NT-Xent-type loss "
                "(pytorch_metric_learning.losses.NTXentLoss, dynaclr.loss.NTXentHCL)."
            )
        return self.loss_function(anchor, positive, negative)

    def _shared_step(self, batch: dict[str, Any], batch_idx: int, stage: Literal["train", "val"]) -> Tensor:
        anchor_images, positive_images = batch["anchor"], batch["positive"]
        negative_images = None if uses_in_batch_negatives(self.loss_function) else batch.get("negative")
        _, anchor = self(anchor_images)
        _, positive = self(positive_images)
        negative = None if negative_images is None else self(negative_images)[1]
        loss = self._contrastive_loss(anchor, positive, negative, batch.get("lineage"))
        outputs = self.training_step_outputs if stage == "train" else self.validation_step_outputs
        if batch_idx < self.log_batches_per_epoch:
            views = [anchor_images, positive_images] + ([] if negative_images is None else [negative_images])
            outputs.extend(detach_sample(views, self.log_samples_per_batch))
        self._log_metrics(loss, anchor, positive, stage, negative, batch.get("lineage"))
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Return the contrastive loss of a training batch."""
        return self._shared_step(batch, batch_idx, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Return the contrastive loss of a validation batch."""
        return self._shared_step(batch, batch_idx, "val")

    def _log_metrics(
        self,
        loss: Tensor,
        anchor: Tensor,
        positive: Tensor,
        stage: str,
        negative: Tensor | None = None,
        lineage: Tensor | None = None,
    ) -> None:
        """Log the loss and similarity metrics of the projections, averaged over ranks."""
        batch_size = anchor.shape[0]
        log_loss(self, loss, stage, batch_size)
        anchor, positive = anchor.detach(), positive.detach()
        metrics = {
            f"metrics/cosine_similarity/positive/{stage}": nn.functional.cosine_similarity(anchor, positive).mean(),
            f"metrics/euclidean_distance/positive/{stage}": nn.functional.pairwise_distance(anchor, positive).mean(),
        }
        if negative is not None:
            negative = negative.detach()
            metrics[f"metrics/cosine_similarity_negative/{stage}"] = nn.functional.cosine_similarity(
                anchor, negative
            ).mean()
            metrics[f"metrics/euclidean_distance_negative/{stage}"] = nn.functional.pairwise_distance(
                anchor, negative
            ).mean()
        elif (
            uses_in_batch_negatives(self.loss_function)
            and batch_size > 1
            and self.current_epoch % self.log_negative_metrics_every_n_epochs == 0
        ):
            metrics.update(in_batch_negative_metrics(anchor, positive, stage, lineage))
        self.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=True, batch_size=batch_size)

    def on_train_epoch_end(self) -> None:
        """Log the kept training samples as an image grid."""
        log_epoch_samples(self, "train_samples", self.training_step_outputs)

    def on_validation_epoch_end(self) -> None:
        """Log the kept validation samples as an image grid (not those of the sanity check)."""
        log_epoch_samples(self, "val_samples", self.validation_step_outputs)

    def configure_optimizers(self) -> Any:
        """AdamW, with the configured learning-rate schedule."""
        return configure_adamw(self, self.lr, self.schedule, self.warmup_epochs)

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> ContrastivePrediction:
        """Return the features, projections and tracking index of the ``anchor`` patches."""
        features, projections = self.model(batch["anchor"])
        return {"features": features, "projections": projections, "index": batch["index"]}


def in_batch_negative_metrics(
    anchor: Tensor, positive: Tensor, stage: str, lineage: Tensor | None = None
) -> dict[str, Tensor]:
    """Similarities of each anchor to its in-batch negatives in an NT-Xent batch.

    The negatives are those the loss uses (:func:`ntxent_negative_mask`): the rows of
    ``cat(anchor, positive)`` of other lineages, which without ``lineage`` are the ``2B - 2``
    rows that are not the anchor or its positive.

    Parameters
    ----------
    anchor, positive : Tensor
        Projections ``(B, D)``; row ``i`` of each is a positive pair.
    stage : str
        ``"train"`` or ``"val"``, the metric-name suffix.
    lineage : Tensor, optional
        ``(B,)`` integer lineage of each anchor; rows of the anchor's lineage are not its negatives.

    Returns
    -------
    dict[str, Tensor]
        Mean (over all anchor-negative pairs) and mean row sum of negative cosine similarities and
        Euclidean distances, and the positive-negative margins; empty when no anchor has a negative.
    """
    batch_size = anchor.shape[0]
    if lineage is None:
        lineage = torch.arange(batch_size, device=anchor.device)
    negative_mask = ntxent_negative_mask(lineage.to(anchor.device))[:batch_size]
    if not negative_mask.any():
        return {}
    candidates = torch.cat([anchor, positive])
    cosine = nn.functional.normalize(anchor, dim=1) @ nn.functional.normalize(candidates, dim=1).T
    distance = torch.cdist(anchor, candidates)
    negative_cosine_mean = cosine[negative_mask].mean()
    negative_distance_mean = distance[negative_mask].mean()
    positive_cosine = nn.functional.cosine_similarity(anchor, positive).mean()
    positive_distance = nn.functional.pairwise_distance(anchor, positive).mean()
    return {
        f"metrics/cosine_similarity/negative_mean/{stage}": negative_cosine_mean,
        f"metrics/cosine_similarity/negative_sum/{stage}": (cosine * negative_mask).sum(dim=1).mean(),
        f"metrics/margin_positive/negative/{stage}": positive_cosine - negative_cosine_mean,
        f"metrics/euclidean_distance/negative_mean/{stage}": negative_distance_mean,
        f"metrics/euclidean_distance/negative_sum/{stage}": (distance * negative_mask).sum(dim=1).mean(),
        f"metrics/margin_euclidean_positive/negative/{stage}": negative_distance_mean - positive_distance,
    }
