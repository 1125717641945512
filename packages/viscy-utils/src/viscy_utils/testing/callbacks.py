"""Callbacks for tests of interrupted and resumed training, nameable by ``class_path`` in a CLI config."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["RecordBatches", "StopAtStep"]


class StopAtStep(Callback):
    """Stop ``fit`` when optimizer step ``step`` starts, after its batch reached the device.

    Parameters
    ----------
    step : int
        Global step at whose start training stops.
    how : {"sigint", "error"}
        ``"sigint"`` sends SIGINT to this process, as Ctrl-C does (run it in a subprocess: Lightning
        then ignores SIGINT for the rest of the process); ``"error"`` raises ``RuntimeError``.
    """

    def __init__(self, step: int, how: Literal["sigint", "error"] = "sigint") -> None:
        self.step = step
        self.how = how

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        """Stop at the configured step."""
        if trainer.global_step != self.step:
            return
        if self.how == "sigint":
            os.kill(os.getpid(), signal.SIGINT)
        else:
            raise RuntimeError(f"stopped at step {self.step}")


def _checksum(batch: Any) -> float:
    """Sum of every tensor in a batch (tensors, dicts, lists and tuples of them), in float64."""
    if isinstance(batch, torch.Tensor):
        return float(batch.double().sum()) if batch.is_floating_point() else float(batch.sum())
    if isinstance(batch, dict):
        return sum(_checksum(value) for value in batch.values())
    if isinstance(batch, list | tuple):
        return sum(_checksum(value) for value in batch)
    return 0.0


class RecordBatches(Callback):
    """Append ``[epoch, batch_idx, global_step, checksum]`` of each trained batch to a JSON-lines file.

    Parameters
    ----------
    path : str
        File to append to.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Record the batch."""
        record = [trainer.current_epoch, batch_idx, trainer.global_step, _checksum(batch)]
        with self.path.open("a") as file:
            file.write(json.dumps(record) + "\n")
