"""``BetaVaeModule``: beta-VAE training of cell patches with a scheduled KL weight."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, TypedDict

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from dynaclr._image_logging import log_epoch_samples
from dynaclr._optim import SCHEDULES, Schedule, configure_adamw
from dynaclr.vae_logging import BetaVaeLogger, latent_decoder
from viscy_models.vae import BetaVaeMonai
from viscy_utils.log_images import detach_sample

__all__ = [
    "BETA_SCHEDULES",
    "LOGVAR_RANGE",
    "MIN_BETA",
    "BetaSchedule",
    "BetaVaeModule",
    "VaeOutput",
    "kl_divergence",
    "reconstruction_loss",
    "scheduled_beta",
]

BetaSchedule = Literal["linear", "cosine", "warmup"]
BETA_SCHEDULES: tuple[str, ...] = ("linear", "cosine", "warmup")
"""KL-weight schedules that ``beta_schedule`` accepts (or None for a constant ``beta``)."""

MIN_BETA = 1e-15
"""Floor of every scheduled KL weight."""

LOGVAR_RANGE = (-20.0, 20.0)
"""Range the log-variance is clamped to in the ``1 + logvar`` term of the KL divergence."""


class VaeOutput(TypedDict):
    """What :meth:`BetaVaeModule.forward` returns.

    Attributes
    ----------
    recon_x : Tensor
        Reconstruction, shaped like the input ``(B, C, Z, Y, X)``.
    z : Tensor
        Latent sample ``(B, latent_dim)`` (the mean in evaluation mode).
    mu, logvar : Tensor
        Mean and log-variance of the latent Gaussian ``(B, latent_dim)``.
    recon_loss, kl_loss, total_loss : Tensor
        Per-sample reconstruction loss, KL divergence, and ``recon_loss + beta * kl_loss``.
    """

    recon_x: Tensor
    z: Tensor
    mu: Tensor
    logvar: Tensor
    recon_loss: Tensor
    kl_loss: Tensor
    total_loss: Tensor


def scheduled_beta(
    epoch: int, beta: float, schedule: BetaSchedule | None, beta_min: float, warmup_epochs: int
) -> float:
    """KL weight at ``epoch``, floored at :data:`MIN_BETA`.

    Parameters
    ----------
    epoch : int
        Current epoch ``e``, from 0.
    beta : float
        Final weight, reached at ``warmup_epochs`` (and the constant weight without a schedule).
    schedule : {"linear", "cosine", "warmup"} or None
        For ``e < W`` (``W = warmup_epochs``): ``"linear"`` gives ``beta_min + (beta - beta_min) * e / W``;
        ``"cosine"`` gives ``beta_min + (beta - beta_min) * (1 + cos(pi * (1 - e / W))) / 2``;
        ``"warmup"`` gives ``beta_min``. From ``e = W`` on, and always for None, ``beta``.
    beta_min : float
        Starting weight of the schedules.
    warmup_epochs : int
        Epochs ``W`` until ``beta`` is reached.

    Returns
    -------
    float
        The KL weight.
    """
    if schedule is None or epoch >= warmup_epochs:
        value = beta
    elif schedule == "linear":
        value = beta_min + (beta - beta_min) * epoch / warmup_epochs
    elif schedule == "cosine":
        value = beta_min + (beta - beta_min) * 0.5 * (1 + math.cos(math.pi * (1 - epoch / warmup_epochs)))
    else:
        value = beta_min
    return max(value, MIN_BETA)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL divergence of ``N(mu, exp(logvar))`` from ``N(0, I)``, summed over latents and averaged over the batch.

    ``-1/2 * sum(1 + clamp(logvar, -20, 20) - mu**2 - exp(logvar))``: the clamp keeps a collapsing
    variance from dominating the loss, while ``exp(logvar)`` still penalizes an exploding one.

    Parameters
    ----------
    mu, logvar : Tensor
        Latent mean and log-variance ``(B, latent_dim)``.

    Returns
    -------
    Tensor
        Scalar mean KL divergence per sample.
    """
    clamped = torch.clamp(logvar, *LOGVAR_RANGE)
    return (-0.5 * torch.sum(1 + clamped - mu.pow(2) - logvar.exp(), dim=1)).mean()


def reconstruction_loss(loss_function: nn.Module, reconstruction: Tensor, target: Tensor) -> Tensor:
    """Reconstruction loss per sample, on the scale of a per-image sum for ``nn.MSELoss``.

    ``nn.MSELoss(reduction="sum")`` is divided by the batch size and ``reduction="mean"`` is multiplied
    by the elements per image, so both give the mean over samples of the per-image squared-error sum;
    other losses are returned as they are.

    Parameters
    ----------
    loss_function : nn.Module
        Called as ``loss_function(reconstruction, target)``.
    reconstruction, target : Tensor
        ``(B, ...)`` tensors of the same shape.

    Returns
    -------
    Tensor
        Scalar loss.
    """
    loss = loss_function(reconstruction, target)
    if isinstance(loss_function, nn.MSELoss):
        if loss_function.reduction == "sum":
            return loss / target.shape[0]
        if loss_function.reduction == "mean":
            return loss * target[0].numel()
    return loss


def _is_monai_2d(vae: nn.Module) -> bool:
    return isinstance(vae, BetaVaeMonai) and vae.model.dimensions == 2


class BetaVaeModule(LightningModule):
    """Beta-VAE training on ``anchor`` patches, with a scheduled KL weight.

    The loss is ``reconstruction + beta * KL`` per sample (see :func:`reconstruction_loss`,
    :func:`kl_divergence` and :func:`scheduled_beta`). Losses, the KL weight, latent statistics and
    NaN/gradient diagnostics are logged by :class:`~dynaclr.vae_logging.BetaVaeLogger`; the first
    samples of each epoch are logged as input/reconstruction image grids by whichever loggers take images.

    Parameters
    ----------
    vae : nn.Module
        Returns ``SimpleNamespace(recon_x, mean, logvar, z)`` for a ``(B, C, Z, Y, X)`` batch, e.g.
        :class:`viscy_models.vae.BetaVae25D` or :class:`viscy_models.vae.BetaVaeMonai`. A 2-D
        ``BetaVaeMonai`` gets the singleton Z of its input squeezed (and of its reconstruction restored).
        Stored as ``self.model``.
    loss_function : nn.Module, optional
        Reconstruction loss; default a new ``nn.MSELoss(reduction="sum")`` per module.
    beta : float
        KL weight (the final one with a schedule).
    beta_schedule : {"linear", "cosine", "warmup"}, optional
        Schedule of the KL weight from ``beta_min`` to ``beta`` over ``beta_warmup_epochs``; None keeps ``beta``.
    beta_min : float
        Starting KL weight of the schedule.
    beta_warmup_epochs : int
        Epochs until the KL weight reaches ``beta``.
    lr : float
        AdamW learning rate.
    lr_schedule : {"Constant", "WarmupCosine"}
        ``"WarmupCosine"``: linear warm-up over ``lr_warmup_epochs`` epochs, then cosine decay to
        zero at ``trainer.max_epochs`` (stepped every epoch).
    log_batches_per_epoch : int
        Batches per epoch whose samples are kept for the image grid.
    log_samples_per_batch : int
        Samples kept from each of those batches.
    example_input_array_shape : Sequence[int]
        Shape of ``example_input_array`` (used for graph logging and ONNX export).
    log_enhanced_visualizations : bool
        Log latent traversals and interpolations at the end of validation.
    log_enhanced_visualizations_frequency : int
        Every this many epochs (never at epoch 0).
    lr_warmup_epochs : int
        Warm-up epochs of the ``"WarmupCosine"`` learning-rate schedule.

    Raises
    ------
    ValueError
        For an unknown ``beta_schedule`` or ``lr_schedule``, a negative ``beta_warmup_epochs`` or a
        ``log_enhanced_visualizations_frequency`` below 1.
    """

    def __init__(
        self,
        vae: nn.Module,
        loss_function: nn.Module | None = None,
        beta: float = 1.0,
        beta_schedule: BetaSchedule | None = None,
        beta_min: float = 0.1,
        beta_warmup_epochs: int = 50,
        lr: float = 1e-5,
        lr_schedule: Schedule = "Constant",
        log_batches_per_epoch: int = 8,
        log_samples_per_batch: int = 1,
        example_input_array_shape: Sequence[int] = (1, 2, 30, 256, 256),
        log_enhanced_visualizations: bool = False,
        log_enhanced_visualizations_frequency: int = 30,
        lr_warmup_epochs: int = 3,
    ) -> None:
        super().__init__()
        if beta_schedule is not None and beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule {beta_schedule!r} is not one of {[*BETA_SCHEDULES, None]}.")
        if lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule {lr_schedule!r} is not one of {list(SCHEDULES)}.")
        if beta_warmup_epochs < 0:
            raise ValueError(f"beta_warmup_epochs must be >= 0, got {beta_warmup_epochs}.")
        if log_enhanced_visualizations_frequency < 1:
            raise ValueError(
                f"log_enhanced_visualizations_frequency must be >= 1, got {log_enhanced_visualizations_frequency}."
            )
        self.model = vae
        self.loss_function = nn.MSELoss(reduction="sum") if loss_function is None else loss_function
        self.beta = beta
        self.beta_schedule = beta_schedule
        self.beta_min = beta_min
        self.beta_warmup_epochs = beta_warmup_epochs
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.lr_warmup_epochs = lr_warmup_epochs
        self.log_batches_per_epoch = log_batches_per_epoch
        self.log_samples_per_batch = log_samples_per_batch
        self.log_enhanced_visualizations = log_enhanced_visualizations
        self.log_enhanced_visualizations_frequency = log_enhanced_visualizations_frequency
        self.example_input_array = torch.zeros(tuple(example_input_array_shape))
        self.vae_logger: BetaVaeLogger | None = None
        self.training_step_outputs: list[list[Any]] = []
        self.validation_step_outputs: list[list[Any]] = []

    @property
    def current_beta(self) -> float:
        """KL weight of the current epoch."""
        return scheduled_beta(self.current_epoch, self.beta, self.beta_schedule, self.beta_min, self.beta_warmup_epochs)

    def forward(self, x: Tensor) -> VaeOutput:
        """Encode and decode a ``(B, C, Z, Y, X)`` batch and compute its losses."""
        squeeze = _is_monai_2d(self.model)
        if squeeze and (x.ndim != 5 or x.shape[2] != 1):
            raise ValueError(f"A 2-D BetaVaeMonai needs (B, C, 1, Y, X) input, got shape {tuple(x.shape)}.")
        output = self.model(x.squeeze(2) if squeeze else x)
        recon_x = output.recon_x.unsqueeze(2) if squeeze else output.recon_x
        recon_loss = reconstruction_loss(self.loss_function, recon_x, x)
        kl_loss = kl_divergence(output.mean, output.logvar)
        return {
            "recon_x": recon_x,
            "z": output.z,
            "mu": output.mean,
            "logvar": output.logvar,
            "recon_loss": recon_loss,
            "kl_loss": kl_loss,
            "total_loss": recon_loss + self.current_beta * kl_loss,
        }

    def _metrics_logger(self, latent: Tensor) -> BetaVaeLogger:
        """Return the metrics logger, sized to the latent the VAE produces."""
        if self.vae_logger is None or self.vae_logger.latent_dim != latent.shape[1]:
            self.vae_logger = BetaVaeLogger(latent_dim=latent.shape[1])
        return self.vae_logger

    def _shared_step(self, batch: dict[str, Any], batch_idx: int, stage: Literal["train", "val"]) -> Tensor:
        x = batch["anchor"]
        output = self(x)
        self._metrics_logger(output["z"]).log_enhanced_metrics(self, output, x, stage, self.current_beta, batch_idx)
        if batch_idx < self.log_batches_per_epoch:
            outputs = self.training_step_outputs if stage == "train" else self.validation_step_outputs
            outputs.extend(detach_sample([x, output["recon_x"]], self.log_samples_per_batch))
        return output["total_loss"]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Return the beta-VAE loss of a training batch."""
        return self._shared_step(batch, batch_idx, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Return the beta-VAE loss of a validation batch."""
        return self._shared_step(batch, batch_idx, "val")

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Log encoder and decoder gradient norms (after backward, before the update)."""
        if self.vae_logger is not None:
            self.vae_logger.log_gradient_norms(self)

    def on_train_epoch_end(self) -> None:
        """Log the kept training inputs and reconstructions as an image grid."""
        log_epoch_samples(self, "train_reconstructions", self.training_step_outputs)

    def on_validation_epoch_end(self) -> None:
        """Log validation reconstructions and, when due, latent traversals and interpolations."""
        log_epoch_samples(self, "val_reconstructions", self.validation_step_outputs)
        due = (
            self.log_enhanced_visualizations
            and self.current_epoch > 0
            and self.current_epoch % self.log_enhanced_visualizations_frequency == 0
        )
        if due and not self.trainer.sanity_checking and self.trainer.is_global_zero and self.vae_logger is not None:
            decode = latent_decoder(self.model)
            if decode is not None:
                self.vae_logger.log_latent_traversal(self, decode)
                self.vae_logger.log_latent_interpolation(self, decode)

    def configure_optimizers(self) -> Any:
        """AdamW, with the configured learning-rate schedule."""
        return configure_adamw(self, self.lr, self.lr_schedule, self.lr_warmup_epochs)

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """Return the latent (the mean, in evaluation mode), reconstruction and tracking index of ``anchor``."""
        output = self(batch["anchor"])
        return {"latent": output["z"], "reconstruction": output["recon_x"], "index": batch["index"]}
