"""``ResumableCheckpoint``: a ``ModelCheckpoint`` whose ``last.ckpt`` is always ready to resume from."""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = ["ResumableCheckpoint"]

_logger = logging.getLogger(__name__)

_SIGNALS_EVERY_RANK_GETS = (KeyboardInterrupt, SIGTERMException)
"""Interruptions that reach every DDP rank, so that all of them take part in saving."""


class ResumableCheckpoint(ModelCheckpoint):
    """A ``ModelCheckpoint`` that keeps ``last.ckpt`` up to date for ``--ckpt_path last``.

    Besides what ``ModelCheckpoint`` saves (``last.ckpt`` at each epoch's end, and the top-k
    checkpoints when ``monitor`` is set), ``last.ckpt`` is rewritten:

    - every ``last_every_n_train_steps`` optimizer steps, for long epochs;
    - when ``fit`` stops on an exception after its first step: Ctrl-C, SLURM's SIGTERM (with
      ``Trainer(plugins=[SLURMEnvironment()])`` or Lightning's default handling), a read error or
      any other failure. Under DDP only interruptions that reach every rank (``KeyboardInterrupt``,
      SIGTERM) save, since saving needs every rank; a failure of one rank keeps the last periodic
      ``last.ckpt``.

    The checkpoint of an interruption holds the loops' progress mid-epoch, so a data module that
    saves its sampler position (``MultiExperimentDataModule``) resumes with exactly the batches
    the epoch had left. Run again with ``--ckpt_path last`` to continue.

    Parameters
    ----------
    *args : Any
        Positional arguments of ``ModelCheckpoint``.
    last_every_n_train_steps : int, optional
        Also rewrite ``last.ckpt`` every this many optimizer steps; None rewrites it only at the
        ends of epochs and on interruption.
    **kwargs : Any
        Keyword arguments of ``ModelCheckpoint``; ``save_last`` must be left unset, True or
        ``"link"``.

    Raises
    ------
    ValueError
        If ``save_last`` is False or ``last_every_n_train_steps`` is not a positive integer.
    """

    def __init__(self, *args: Any, last_every_n_train_steps: int | None = None, **kwargs: Any) -> None:
        if kwargs.get("save_last") is False:
            raise ValueError("ResumableCheckpoint keeps last.ckpt: leave save_last unset, or use ModelCheckpoint.")
        if last_every_n_train_steps is not None and last_every_n_train_steps < 1:
            raise ValueError(f"last_every_n_train_steps must be a positive integer; got {last_every_n_train_steps}.")
        kwargs["save_last"] = kwargs.get("save_last") or True
        super().__init__(*args, **kwargs)
        self.last_every_n_train_steps = last_every_n_train_steps
        self._step_of_last_refresh = -1

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Save as ``ModelCheckpoint`` does, then refresh ``last.ckpt`` at its step interval."""
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        interval = self.last_every_n_train_steps
        if interval is None or trainer.sanity_checking or trainer.fast_dev_run:
            return
        if trainer.global_step % interval == 0 and trainer.global_step != self._step_of_last_refresh:
            self._refresh_last(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Write ``last.ckpt`` when ``fit`` stops on an exception after its first step."""
        fitting = trainer.state.fn == "fit" and not trainer.fast_dev_run
        if not fitting or self.dirpath is None or trainer.global_step == 0:
            return
        if trainer.world_size > 1 and not isinstance(exception, _SIGNALS_EVERY_RANK_GETS):
            return
        self._refresh_last(trainer)
        if trainer.is_global_zero:
            _logger.warning(
                "Saved %s at epoch %d, step %d after %s; run again with --ckpt_path last to continue.",
                self.last_model_path,
                trainer.current_epoch,
                trainer.global_step,
                type(exception).__name__,
            )

    def _refresh_last(self, trainer: Trainer) -> None:
        """Write the trainer's state to ``last.ckpt`` (the run's own, never an earlier run's file)."""
        if not self.last_model_path:
            self.last_model_path = self._unused_last_path(trainer)
        self._step_of_last_refresh = trainer.global_step
        trainer.save_checkpoint(self.last_model_path, weights_only=self.save_weights_only)

    def _unused_last_path(self, trainer: Trainer) -> str:
        """``last.ckpt`` in the checkpoint directory, or ``last-v1.ckpt``... when a file of that name exists."""
        path = self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST)
        version = self.STARTING_VERSION
        while self.file_exists(path, trainer):
            path = self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST, ver=version)
            version += 1
        return path
