"""Sample-image grids for whichever experiment loggers a run has."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import Logger, TensorBoardLogger

from viscy_utils.log_images import render_images

__all__ = ["log_epoch_samples", "log_sample_grid"]

_logger = logging.getLogger(__name__)


def log_sample_grid(loggers: Sequence[Logger], key: str, samples: list[list[np.ndarray]], step: int) -> None:
    """Render samples as one RGB grid and log it to every logger that takes images.

    TensorBoard gets ``add_image``; loggers with a ``log_image(key, images)`` method (W&B,
    Neptune...) get that; others are skipped. Call it on rank zero only.

    Parameters
    ----------
    loggers : sequence of Logger
        The trainer's loggers (empty with ``logger: false``).
    key : str
        Image name, e.g. ``"train_samples"``.
    samples : list of list of np.ndarray
        Output of :func:`viscy_utils.log_images.detach_sample`.
    step : int
        Step (the epoch) the image is logged at.
    """
    if not loggers:
        return
    grid = render_images(samples, cmaps=["gray"] * len(samples[0]))
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, grid, step, dataformats="HWC")
        elif callable(log_image := getattr(logger, "log_image", None)):
            log_image(key=key, images=[grid], step=step)
        else:
            _logger.debug("%s cannot log images; skipping %s.", type(logger).__name__, key)


def log_epoch_samples(module: LightningModule, key: str, samples: list[list[np.ndarray]]) -> None:
    """Log the samples a module kept during an epoch as one grid on rank zero, then empty the list.

    Samples of the sanity-check validation are dropped without logging.

    Parameters
    ----------
    module : LightningModule
        The module being trained (its trainer gives the rank, loggers and epoch).
    key : str
        Image name, e.g. ``"val_samples"``.
    samples : list of list of np.ndarray
        Rows of :func:`viscy_utils.log_images.detach_sample` output; emptied in place on every rank.
    """
    if samples and module.trainer.is_global_zero and not module.trainer.sanity_checking:
        log_sample_grid(module.loggers, key, samples, module.current_epoch)
    samples.clear()
