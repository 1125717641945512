"""The optimizer and learning-rate schedules shared by the DynaCLR LightningModules."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule

__all__ = ["SCHEDULES", "Schedule", "configure_adamw", "warmup_cosine_factor"]

Schedule = Literal["Constant", "WarmupCosine"]
SCHEDULES: tuple[str, ...] = ("Constant", "WarmupCosine")
"""Learning-rate schedules a module's ``schedule`` argument accepts."""


def warmup_cosine_factor(epoch: int, warmup_epochs: int, max_epochs: int) -> float:
    """Learning-rate multiplier at ``epoch``: linear warm-up, then cosine decay to zero at ``max_epochs``.

    Parameters
    ----------
    epoch : int
        Current epoch, from 0.
    warmup_epochs : int
        Epochs of linear warm-up, from ``1 / (warmup_epochs + 1)`` towards 1.
    max_epochs : int
        Epoch at which the factor reaches 0.

    Returns
    -------
    float
        The multiplier of the base learning rate.
    """
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    progress = (epoch - warmup_epochs) / max(1, max_epochs - warmup_epochs)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def configure_adamw(module: LightningModule, lr: float, schedule: Schedule, warmup_epochs: int = 3) -> Any:
    """AdamW over the module's parameters, with a per-epoch schedule for ``"WarmupCosine"``.

    Parameters
    ----------
    module : LightningModule
        The module being trained (its trainer gives ``max_epochs``).
    lr : float
        Base learning rate.
    schedule : {"Constant", "WarmupCosine"}
        Learning-rate schedule.
    warmup_epochs : int
        Warm-up epochs of ``"WarmupCosine"``.

    Returns
    -------
    torch.optim.Optimizer or dict
        What ``configure_optimizers`` returns.

    Raises
    ------
    ValueError
        If ``schedule`` is unknown, or ``"WarmupCosine"`` is used without ``trainer.max_epochs``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r} is not one of {list(SCHEDULES)}.")
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr)
    if schedule == "Constant":
        return optimizer
    max_epochs = module.trainer.max_epochs
    if max_epochs is None or max_epochs < 1:
        raise ValueError("schedule 'WarmupCosine' needs trainer.max_epochs (the epoch where the cosine reaches 0).")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: warmup_cosine_factor(epoch, warmup_epochs, max_epochs)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
