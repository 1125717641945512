"""``JointContrastiveModule``: CLIP-style contrastive alignment of two channels, each with its own encoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from pytorch_metric_learning.losses import NTXentLoss
from torch import Tensor, nn

from dynaclr._optim import Schedule
from dynaclr.engine import (
    _EMBEDDINGS_INSTEAD,
    ContrastiveModule,
    ContrastivePrediction,
    ntxent_labels,
    uses_in_batch_negatives,
)
from viscy_data.compatibility import accept_default_only
from viscy_utils.log_images import detach_sample

__all__ = ["PREDICTION_ARMS", "JointContrastiveModule", "JointEncoders", "MultiModalContrastiveModule"]

PredictionArm = Literal["source", "target"]
PREDICTION_ARMS: dict[str, tuple[str, slice]] = {
    "source": ("source_encoder", slice(0, 1)),
    "target": ("target_encoder", slice(1, 2)),
}
"""Prediction arm -> the :class:`JointEncoders` attribute that embeds it and the input channel it reads."""


class JointEncoders(nn.Module):
    """A source and a target encoder, each returning ``(features, projections)``.

    Parameters
    ----------
    source_encoder : nn.Module
        Encoder of the source channel, e.g. :class:`viscy_models.contrastive.ContrastiveEncoder`.
    target_encoder : nn.Module
        Encoder of the target channel.
    """

    def __init__(self, source_encoder: nn.Module, target_encoder: nn.Module) -> None:
        super().__init__()
        self.source_encoder = source_encoder
        self.target_encoder = target_encoder

    def forward(self, source: Tensor, target: Tensor) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """Return ``((source_features, source_projections), (target_features, target_projections))``."""
        return self.source_encoder(source), self.target_encoder(target)

    def forward_features(self, source: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(source_features, target_features)``."""
        return self.source_encoder(source)[0], self.target_encoder(target)[0]

    def forward_projections(self, source: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(source_projections, target_projections)``."""
        return self.source_encoder(source)[1], self.target_encoder(target)[1]


class JointContrastiveModule(ContrastiveModule):
    """Cross-channel contrastive learning: channel 0 through the source encoder, channel 1 through the target.

    For a batch of ``anchor`` and ``positive`` patches ``(B, 2, Z, Y, X)`` the loss is
    ``NCE(anchor_source, anchor_target) + NCE(positive_target, positive_source)``, where
    ``NCE(z1, z2) = loss_function(cat(z1, z2), cat(arange(B), arange(B)))`` on the projections
    (gathered from every rank under DDP, as :class:`~dynaclr.engine.ContrastiveModule` does).
    Metrics and image grids are those of :class:`~dynaclr.engine.ContrastiveModule`, with
    ``anchor_source`` as the anchor and ``anchor_target`` as the positive.

    Parameters
    ----------
    encoder : JointEncoders
        The source and target encoders. Stored as ``self.model``.
    loss_function : nn.Module, optional
        An NT-Xent-type loss (pytorch-metric-learning ``NTXentLoss`` or a subclass such as
        :class:`dynaclr.loss.NTXentHCL`); default a new ``NTXentLoss()`` per module.
    lr : float
        AdamW learning rate.
    schedule : {"Constant", "WarmupCosine"}
        Learning-rate schedule, as for :class:`~dynaclr.engine.ContrastiveModule`.
    log_batches_per_epoch : int
        Batches per epoch whose samples are kept for the image grid.
    log_samples_per_batch : int
        Samples kept from each of those batches.
    log_embeddings : bool
        Accepted for reference configs; only the default ``False`` is accepted, as for
        :class:`~dynaclr.engine.ContrastiveModule`: write embeddings with ``dynaclr predict``.
    embedding_log_frequency : int
        Accepted for reference configs; only the default ``10`` is accepted (the reference never
        used it): write embeddings with ``dynaclr predict``.
    example_input_array_shape : Sequence[int]
        Shape ``(B, 2, Z, Y, X)`` of a two-channel batch; ``example_input_array`` is its
        ``(source, target)`` channel pair.
    prediction_arm : {"source", "target"}
        Which encoder (and input channel, 0 or 1) ``predict_step`` embeds.
    warmup_epochs : int
        Warm-up epochs of the ``"WarmupCosine"`` schedule.
    all_gather_negatives : bool
        Under DDP, gather projections from every rank before the loss.

    Raises
    ------
    ValueError
        If the loss is not NT-Xent-type, ``prediction_arm`` or the schedule is unknown, or
        ``log_embeddings`` or ``embedding_log_frequency`` is not its default.
    """

    def __init__(
        self,
        encoder: JointEncoders,
        loss_function: nn.Module | None = None,
        lr: float = 1e-3,
        schedule: Schedule = "Constant",
        log_batches_per_epoch: int = 8,
        log_samples_per_batch: int = 1,
        log_embeddings: bool = False,
        embedding_log_frequency: int = 10,
        example_input_array_shape: Sequence[int] = (1, 2, 15, 256, 256),
        prediction_arm: PredictionArm = "source",
        warmup_epochs: int = 3,
        all_gather_negatives: bool = True,
    ) -> None:
        loss_function = NTXentLoss() if loss_function is None else loss_function
        if not uses_in_batch_negatives(loss_function):
            raise ValueError(
                f"JointContrastiveModule needs an NT-Xent-type loss (pytorch_metric_learning.losses.NTXentLoss "
                f"or a subclass such as dynaclr.loss.NTXentHCL), got {type(loss_function).__name__}."
            )
        if prediction_arm not in PREDICTION_ARMS:
            raise ValueError(f"prediction_arm {prediction_arm!r} is not one of {list(PREDICTION_ARMS)}.")
        accept_default_only("embedding_log_frequency", embedding_log_frequency, 10, _EMBEDDINGS_INSTEAD)
        super().__init__(
            encoder=encoder,
            loss_function=loss_function,
            lr=lr,
            schedule=schedule,
            log_batches_per_epoch=log_batches_per_epoch,
            log_samples_per_batch=log_samples_per_batch,
            log_embeddings=log_embeddings,
            example_input_array_shape=example_input_array_shape,
            warmup_epochs=warmup_epochs,
            all_gather_negatives=all_gather_negatives,
        )
        self.prediction_arm = prediction_arm
        example = self.example_input_array
        self.example_input_array = (example[:, 0:1], example[:, 1:2])

    def forward(self, source: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(source_projections, target_projections)``."""
        return self.model.forward_projections(source, target)

    def _nce(self, first: Tensor, second: Tensor) -> Tensor:
        """NT-Xent of ``cat(first, second)``, pairing row ``i`` of each (over all ranks' rows)."""
        first, second = self._gather(first), self._gather(second)
        return self.loss_function(torch.cat([first, second]), ntxent_labels(first.shape[0], first.device))

    def _shared_step(self, batch: dict[str, Any], batch_idx: int, stage: Literal["train", "val"]) -> Tensor:
        anchor_images, positive_images = batch["anchor"], batch["positive"]
        anchor_source, anchor_target = self(anchor_images[:, 0:1], anchor_images[:, 1:2])
        positive_source, positive_target = self(positive_images[:, 0:1], positive_images[:, 1:2])
        loss = self._nce(anchor_source, anchor_target) + self._nce(positive_target, positive_source)
        if batch_idx < self.log_batches_per_epoch:
            outputs = self.training_step_outputs if stage == "train" else self.validation_step_outputs
            outputs.extend(detach_sample([anchor_images, positive_images], self.log_samples_per_batch))
        self._log_metrics(loss, anchor_source, anchor_target, stage)
        return loss

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> ContrastivePrediction:
        """Return features, projections and tracking index of ``anchor`` through the ``prediction_arm`` encoder."""
        encoder_name, channels = PREDICTION_ARMS[self.prediction_arm]
        features, projections = getattr(self.model, encoder_name)(batch["anchor"][:, channels])
        return {"features": features, "projections": projections, "index": batch["index"]}


MultiModalContrastiveModule = JointContrastiveModule
"""Alias of :class:`JointContrastiveModule`."""
