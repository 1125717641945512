"""``LogProgress``: Lightning progress as whole printed lines, for output that goes to a file."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar

from viscy_utils.progress import ProgressMeter, format_count, format_duration, format_rate

__all__ = ["LogProgress"]


class LogProgress(ProgressBar):
    """Progress bar that prints one line every ``every_n_steps`` steps or ``every_n_seconds`` seconds.

    Lightning's TQDM and Rich bars redraw a terminal line and leave nothing in a file; this bar
    prints whole lines to stdout, flushed at once, so that a piped run (``dynaclr fit ... > log``,
    SLURM, nohup) shows its progress as it goes. During training a line reads (wrapped here)::

        train epoch 3/100 step 120/1095 (11%) | 2.41 it/s, 154 samples/s | ETA epoch 0:06:44, fit 11:23:05 |
        loss/train_step=0.4312 v_num=0001

    Validation, test and predict lines have the same form, without metrics; each training
    epoch and each validation, test and predict run ends with a ``done`` line with its metrics.
    Rates and ETAs are means since the start of the epoch (run); the fit ETA extrapolates from
    the whole fit so far, validation included, to ``max_epochs`` or ``max_steps``, whichever
    ends first. Samples are counted as the leading dimension of the first tensor of each batch.
    Only rank zero prints; the sanity check prints nothing.

    Parameters
    ----------
    every_n_steps : int, optional
        Steps between lines; None to print on time alone.
    every_n_seconds : float, optional
        Seconds between lines; None to print every ``every_n_steps`` steps alone.

    Raises
    ------
    ValueError
        If a trigger is not positive, or neither is set.
    """

    def __init__(self, every_n_steps: int | None = None, every_n_seconds: float | None = 60.0) -> None:
        super().__init__()
        if every_n_steps is None and every_n_seconds is None:
            raise ValueError("Set every_n_steps, every_n_seconds or both: LogProgress would print nothing.")
        if (every_n_steps is not None and every_n_steps < 1) or (every_n_seconds is not None and every_n_seconds <= 0):
            raise ValueError(
                f"every_n_steps and every_n_seconds must be positive, got {every_n_steps} and {every_n_seconds}."
            )
        self.every_n_steps = every_n_steps
        self.every_n_seconds = every_n_seconds
        self._enabled = True
        self._fitting = False
        self._fit_start_step = 0
        self._fit = ProgressMeter(math.inf)
        self._train = ProgressMeter(math.inf)
        self._eval: ProgressMeter | None = None

    @property
    def is_enabled(self) -> bool:
        """Whether this bar prints (False on ranks other than zero)."""
        return self._enabled

    def disable(self) -> None:
        """Stop printing."""
        self._enabled = False

    def enable(self) -> None:
        """Print again."""
        self._enabled = True

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Show the epoch in validation lines from now on."""
        self._fitting = True

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Stop showing the epoch."""
        self._fitting = False

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the clock of the whole fit."""
        self._fit = ProgressMeter(math.inf)
        self._fit_start_step = trainer.global_step

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the clock of the epoch."""
        self._train = self._meter(self.total_train_batches)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Count the batch; print a line when one is due."""
        self._fit.update()
        if self._train.update(_count_samples(batch)):
            left = self._train.total - (batch_idx + 1)
            epoch_eta, fit_eta = self._train.eta(left), self._fit_eta(trainer, left)
            eta = f"ETA epoch {format_duration(epoch_eta)}, fit {format_duration(fit_eta)}"
            head = f"{self._where(trainer, 'train')} step {format_count(batch_idx + 1, self._train.total)}"
            self._print_line(trainer, pl_module, head, self._train, eta, with_metrics=True)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Print the epoch's ``done`` line."""
        eta = f"ETA fit {format_duration(self._fit_eta(trainer, 0))}"
        self._print_done(trainer, pl_module, "train", self._train, eta)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the clock of a validation run (not of the sanity check)."""
        self._start_eval(trainer, trainer.num_val_batches)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Count the batch; print a line when one is due."""
        self._eval_batch(trainer, pl_module, "validate", batch)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Print the run's ``done`` line with its metrics."""
        self._end_eval(trainer, pl_module, "validate")

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the clock of a test run."""
        self._start_eval(trainer, trainer.num_test_batches)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Count the batch; print a line when one is due."""
        self._eval_batch(trainer, pl_module, "test", batch)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Print the run's ``done`` line with its metrics."""
        self._end_eval(trainer, pl_module, "test")

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the clock of a predict run."""
        self._start_eval(trainer, trainer.num_predict_batches)

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Count the batch; print a line when one is due."""
        self._eval_batch(trainer, pl_module, "predict", batch)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Print the run's ``done`` line."""
        self._end_eval(trainer, pl_module, "predict")

    def _meter(self, total: float) -> ProgressMeter:
        return ProgressMeter(total, every_n_steps=self.every_n_steps, every_n_seconds=self.every_n_seconds)

    def _start_eval(self, trainer: Trainer, batches_per_dataloader: list[int | float]) -> None:
        self._eval = None if trainer.sanity_checking else self._meter(sum(batches_per_dataloader))

    def _eval_batch(self, trainer: Trainer, pl_module: LightningModule, stage: str, batch: Any) -> None:
        if self._eval is not None and self._eval.update(_count_samples(batch)):
            meter = self._eval
            eta = f"ETA {format_duration(meter.eta(meter.total - meter.steps))}"
            head = f"{self._where(trainer, stage)} step {format_count(meter.steps, meter.total)}"
            self._print_line(trainer, pl_module, head, meter, eta, with_metrics=False)

    def _end_eval(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._eval is not None:
            self._print_done(trainer, pl_module, stage, self._eval, None)
            self._eval = None

    def _where(self, trainer: Trainer, stage: str) -> str:
        """``"train epoch 3/100"``; the epoch only while fitting, its total only when known."""
        if not self._fitting:
            return stage
        max_epochs = trainer.max_epochs
        total = f"/{max_epochs}" if max_epochs is not None and max_epochs > 0 else ""
        return f"{stage} epoch {trainer.current_epoch + 1}{total}"

    def _fit_eta(self, trainer: Trainer, batches_left_in_epoch: float) -> float:
        """Seconds left in the fit, at its pace so far, to ``max_epochs`` or ``max_steps``, whichever ends first."""
        estimates = []
        max_epochs = trainer.max_epochs
        if max_epochs is not None and max_epochs > 0:
            epochs_left = max_epochs - trainer.current_epoch - 1
            estimates.append(self._fit.eta(epochs_left * self._train.total + batches_left_in_epoch))
        steps_done = trainer.global_step - self._fit_start_step
        if trainer.max_steps > 0 and steps_done > 0:
            batches_per_step = self._fit.steps / steps_done
            estimates.append(self._fit.eta((trainer.max_steps - trainer.global_step) * batches_per_step))
        return min(estimates, default=math.inf)

    def _print_done(
        self, trainer: Trainer, pl_module: LightningModule, stage: str, meter: ProgressMeter, eta: str | None
    ) -> None:
        head = f"{self._where(trainer, stage)} done: {meter.steps} steps in {format_duration(meter.elapsed)}"
        self._print_line(trainer, pl_module, head, meter, eta, with_metrics=True)

    def _print_line(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        head: str,
        meter: ProgressMeter,
        eta: str | None,
        with_metrics: bool,
    ) -> None:
        """Print ``head | rates | eta | metrics`` (rank zero only), flushed."""
        if not self._enabled:
            return
        step_rate, sample_rate = meter.rates()
        parts = [head, f"{format_rate(step_rate)} it/s, {format_rate(sample_rate)} samples/s"]
        if eta is not None:
            parts.append(eta)
        metrics = self.get_metrics(trainer, pl_module) if with_metrics else {}
        if metrics:
            parts.append(" ".join(f"{name}={_format_value(value)}" for name, value in metrics.items()))
        print(" | ".join(parts), flush=True)


def _format_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _count_samples(batch: Any) -> int:
    """Leading dimension of the batch's first tensor, searching dicts, lists and tuples; 0 when there is none."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 0
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            if count := _count_samples(item):
                return count
    return 0
