"""How every DynaCLR module logs its loss, so that ``loss/train`` and ``loss/val`` mean the same everywhere."""

from __future__ import annotations

from lightning.pytorch import LightningModule
from torch import Tensor

__all__ = ["log_loss"]


def log_loss(module: LightningModule, loss: Tensor, stage: str, batch_size: int) -> None:
    """Log ``loss/{stage}``: per step and per epoch in training, per epoch otherwise; averaged over ranks.

    Lightning writes the training curve as ``loss/train_step`` and ``loss/train_epoch``;
    checkpoint callbacks monitor ``loss/val``.

    Parameters
    ----------
    module : LightningModule
        The module that logs.
    loss : Tensor
        Scalar loss of the batch.
    stage : str
        ``"train"``, ``"val"`` or ``"test"``.
    batch_size : int
        Samples in the batch (the weight of this batch in the epoch mean).
    """
    module.log(
        f"loss/{stage}",
        loss.detach(),
        on_step=stage == "train",
        on_epoch=True,
        prog_bar=True,
        sync_dist=True,
        batch_size=batch_size,
    )
