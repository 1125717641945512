"""``TemperatureSchedule``: the softmax temperature of an NT-Xent-type loss, changed from epoch to epoch."""

from __future__ import annotations

import math
from typing import Literal

from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["TemperatureSchedule", "scheduled_temperature"]

_SHAPES = ("cosine", "linear")


def scheduled_temperature(
    start: float, end: float, epoch: int, epochs: int, shape: Literal["cosine", "linear"] = "cosine"
) -> float:
    """Return the temperature of ``epoch`` (0-based) on a schedule from ``start`` to ``end``.

    The first epoch trains at ``start``, the last of ``epochs`` at ``end``, and any later epoch
    (a run extended past its schedule) stays at ``end``.

    Parameters
    ----------
    start, end : float
        Temperatures of the first and of the last epoch.
    epoch : int
        The epoch, from 0.
    epochs : int
        Length of the schedule in epochs (>= 1); with 1, every epoch trains at ``start``.
    shape : {"cosine", "linear"}
        ``cosine``: half a cosine period, flat at both ends; ``linear``: equal steps.

    Returns
    -------
    float
        The temperature.

    Examples
    --------
    >>> [round(scheduled_temperature(0.2, 0.05, epoch, 5), 4) for epoch in range(6)]
    [0.2, 0.178, 0.125, 0.072, 0.05, 0.05]
    """
    if epochs == 1:
        return start
    progress = min(epoch, epochs - 1) / (epochs - 1)
    weight = 0.5 * (1.0 + math.cos(math.pi * progress)) if shape == "cosine" else 1.0 - progress
    return end + (start - end) * weight


class TemperatureSchedule(Callback):
    """Set the temperature of the module's ``loss_function`` at the start of each training epoch.

    For losses with a ``temperature`` attribute that they read at each call:
    :class:`~dynaclr.loss.NTXentHCL` and ``pytorch_metric_learning.losses.NTXentLoss``. Without
    this callback the configured temperature stays constant. The value is a function of the
    epoch alone (:func:`scheduled_temperature`), so a resumed run continues the schedule, and
    validation uses the temperature of the epoch it follows. It is logged as ``loss/temperature``
    once per epoch. In a training config::

        trainer:
          callbacks:
            - class_path: dynaclr.temperature.TemperatureSchedule
              init_args: {start: 0.2, end: 0.07}   # cosine over max_epochs

    Parameters
    ----------
    start : float
        Temperature of the first epoch (> 0).
    end : float
        Temperature of the last epoch (> 0).
    epochs : int, optional
        Length of the schedule; None uses the trainer's ``max_epochs``.
    shape : {"cosine", "linear"}
        How the temperature moves from ``start`` to ``end``.

    Raises
    ------
    ValueError
        If a temperature is not positive, ``epochs`` is below 1 or ``shape`` is unknown; when
        fitting starts, if the module has no ``loss_function`` with a ``temperature``, or
        ``epochs`` is None and the trainer has no ``max_epochs``.
    """

    def __init__(
        self,
        start: float,
        end: float,
        epochs: int | None = None,
        shape: Literal["cosine", "linear"] = "cosine",
    ) -> None:
        if not (start > 0 and end > 0):
            raise ValueError(f"Temperatures must be positive; got start={start}, end={end}.")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be at least 1; got {epochs}.")
        if shape not in _SHAPES:
            raise ValueError(f"shape must be one of {_SHAPES}; got {shape!r}.")
        self.start, self.end, self.epochs, self.shape = start, end, epochs, shape

    def _schedule_length(self, trainer: Trainer) -> int:
        if self.epochs is not None:
            return self.epochs
        if trainer.max_epochs is None or trainer.max_epochs < 1:
            raise ValueError("TemperatureSchedule needs epochs when the trainer has no max_epochs.")
        return trainer.max_epochs

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Check that the module's loss has a temperature to schedule."""
        loss_function = getattr(pl_module, "loss_function", None)
        if not hasattr(loss_function, "temperature"):
            raise ValueError(
                f"TemperatureSchedule needs a loss_function with a temperature; "
                f"{type(pl_module).__name__}.loss_function is {type(loss_function).__name__}."
            )
        self._schedule_length(trainer)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Set and log the temperature of this epoch."""
        temperature = scheduled_temperature(
            self.start, self.end, trainer.current_epoch, self._schedule_length(trainer), self.shape
        )
        pl_module.loss_function.temperature = temperature
        pl_module.log("loss/temperature", temperature, on_step=False, on_epoch=True, batch_size=1)
