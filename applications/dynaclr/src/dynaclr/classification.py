"""Binary classification of cell patches with a contrastive encoder's backbone, and a CSV prediction writer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryF1Score

from dynaclr._image_logging import log_epoch_samples
from dynaclr._loss_logging import log_loss
from viscy_utils.callbacks.embedding_writer import index_to_dataframe
from viscy_utils.log_images import detach_sample

__all__ = ["ClassificationModule", "ClassificationPredictionWriter", "predictions_to_dataframe"]

_EXAMPLE_BATCHES = 4
"""Batches per epoch whose first patch is logged as an example image."""


def _binary_metrics(stage: str) -> MetricCollection:
    """Accuracy and F1 of probabilities thresholded at 0.5, logged as ``metric/{name}/{stage}``."""
    return MetricCollection(
        {"accuracy": BinaryAccuracy(), "f1_score": BinaryF1Score()}, prefix="metric/", postfix=f"/{stage}"
    )


class ClassificationModule(LightningModule):
    """Binary classifier: the stem and timm backbone of a contrastive encoder with a one-logit head.

    The backbone's classifier head is replaced by ``Linear(num_features, 1)`` (``backbone.head.fc`` for
    ConvNeXt, ``backbone.fc`` for ResNet); the projection head is not used. Fit batches are ``(x, y)``
    with ``y`` of shape ``(B, 1)`` in {0, 1}. ``loss/{stage}`` (train on step and epoch, validation on
    epoch) and the epoch's ``metric/accuracy/{stage}`` and ``metric/f1_score/{stage}`` of
    ``sigmoid(logit) > 0.5`` are logged, averaged over all ranks' samples. The first patch of the first
    4 batches of each epoch is logged as ``{stage}/examples`` by whichever loggers take images.

    Parameters
    ----------
    encoder : ContrastiveEncoder
        :class:`viscy_models.contrastive.ContrastiveEncoder` (or a module with a ``stem`` and a timm
        ``encoder``), e.g. pretrained by :class:`~dynaclr.engine.ContrastiveModule`. Its backbone's head is
        replaced in place.
    lr : float or None
        AdamW learning rate; None uses AdamW's default (1e-3).
    loss : nn.Module, optional
        Loss of ``(logits, y)``; default a new ``nn.BCEWithLogitsLoss(pos_weight=torch.tensor(1.0))`` per module.
    example_input_array_shape : Sequence[int]
        Shape of ``example_input_array`` (used for graph logging and ONNX export).

    Raises
    ------
    TypeError
        If ``encoder.encoder`` is not a timm model (it has no ``reset_classifier``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        lr: float | None,
        loss: nn.Module | None = None,
        example_input_array_shape: Sequence[int] = (2, 1, 15, 160, 160),
    ) -> None:
        super().__init__()
        backbone = encoder.encoder
        if not callable(getattr(backbone, "reset_classifier", None)):
            raise TypeError(
                f"ClassificationModule needs an encoder whose `encoder` is a timm model, got {type(backbone).__name__}."
            )
        backbone.reset_classifier(1)
        self.stem = encoder.stem
        self.backbone = backbone
        self.loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(1.0)) if loss is None else loss
        self.lr = lr
        self.example_input_array = torch.zeros(tuple(example_input_array_shape))
        self.train_metrics = _binary_metrics("train")
        self.val_metrics = _binary_metrics("val")
        self.train_examples: list[list[Any]] = []
        self.val_examples: list[list[Any]] = []

    def forward(self, x: Tensor) -> Tensor:
        """Return the logits ``(B, 1)`` of a ``(B, C, Z, Y, X)`` batch."""
        return self.backbone(self.stem(x))

    def _fit_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, stage: Literal["train", "val"]) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        batch_size = x.shape[0]
        log_loss(self, loss, stage, batch_size)
        metrics = self.train_metrics if stage == "train" else self.val_metrics
        metrics.update(torch.sigmoid(logits.detach()), y)
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=batch_size)
        if batch_idx < _EXAMPLE_BATCHES:
            examples = self.train_examples if stage == "train" else self.val_examples
            examples.extend(detach_sample([x[:, :1]], 1))
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Return the loss of a training batch ``(x, y)``."""
        return self._fit_step(batch, batch_idx, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Return the loss of a validation batch ``(x, y)``."""
        return self._fit_step(batch, batch_idx, "val")

    def on_train_epoch_end(self) -> None:
        """Log the training example patches."""
        log_epoch_samples(self, "train/examples", self.train_examples)

    def on_validation_epoch_end(self) -> None:
        """Log the validation example patches."""
        log_epoch_samples(self, "val/examples", self.val_examples)

    def predict_step(
        self, batch: tuple[Tensor, Tensor, dict[str, Any]], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        """Return the tracking columns of a batch ``(x, y, indices)`` with its label and probability."""
        x, y, indices = batch
        return {**indices, "label": y, "prediction": torch.sigmoid(self(x))}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW with ``lr`` (AdamW's default when None)."""
        return torch.optim.AdamW(self.parameters(), **({} if self.lr is None else {"lr": self.lr}))


def predictions_to_dataframe(predictions: Sequence[Any]) -> pd.DataFrame:
    """One row per sample of :meth:`ClassificationModule.predict_step` outputs.

    Parameters
    ----------
    predictions : sequence
        Batch dicts of columns (tensors flattened to one value per sample), or one list of them per dataloader.

    Returns
    -------
    pd.DataFrame
        The batches' columns, concatenated.
    """
    batches = list(predictions)
    if batches and isinstance(batches[0], list):
        batches = [batch for dataloader_batches in batches for batch in dataloader_batches]
    if not batches:
        return pd.DataFrame()
    return pd.concat([index_to_dataframe(batch) for batch in batches], ignore_index=True)


class ClassificationPredictionWriter(BasePredictionWriter):
    """Write all predictions of a run to one CSV (tracking columns, ``label``, ``prediction``) on rank zero.

    Under DDP every rank's predictions are gathered on rank zero first.

    Parameters
    ----------
    output_path : str or Path
        The CSV file.
    overwrite : bool
        Replace an existing file; otherwise an existing ``output_path`` is refused at construction,
        at prediction start and before writing.

    Raises
    ------
    FileExistsError
        If ``output_path`` exists and ``overwrite`` is False.
    """

    def __init__(self, output_path: str | Path, overwrite: bool = False) -> None:
        super().__init__("epoch")
        self.output_path = Path(output_path)
        self.overwrite = overwrite
        self._check_output()

    def _check_output(self) -> None:
        if self.output_path.exists() and not self.overwrite:
            raise FileExistsError(f"{self.output_path} exists; pass overwrite=True to replace it.")

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Refuse to start when the file exists and ``overwrite`` is False."""
        self._check_output()

    def write_on_epoch_end(
        self, trainer: Trainer, pl_module: LightningModule, predictions: Sequence[Any], batch_indices: Sequence[Any]
    ) -> None:
        """Gather the run's predictions on rank zero and write them as one CSV."""
        table = predictions_to_dataframe(predictions)
        if trainer.world_size > 1:
            tables = [pd.DataFrame()] * trainer.world_size if trainer.is_global_zero else None
            torch.distributed.gather_object(table, tables, dst=0)
            if tables is not None:
                table = pd.concat(tables, ignore_index=True)
        if not trainer.is_global_zero:
            return
        if table.empty:
            raise RuntimeError("The prediction run produced no predictions to write.")
        self._check_output()
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(self.output_path, index=False)
