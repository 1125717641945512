"""``BetaVaeLogger``: what a beta-VAE logs besides its loss (latent statistics, diagnostics, latent-space images)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn

from dynaclr._image_logging import log_sample_grid
from viscy_models.vae import BetaVaeMonai
from viscy_utils.log_images import detach_sample

if TYPE_CHECKING:
    from dynaclr.vae import VaeOutput

__all__ = ["BetaVaeLogger", "Decoder", "latent_decoder"]

_logger = logging.getLogger(__name__)

Decoder = Callable[[Tensor], Tensor]
"""Maps latents ``(N, latent_dim)`` to images ``(N, C, Z, Y, X)``."""

_PARAMETER_GROUPS = {"encoder": "encode", "decoder": "decode"}
"""Diagnostic group -> substring of the parameter names in it (``encoder.*``, MONAI's ``encode.*``...)."""


def latent_decoder(vae: nn.Module) -> Decoder | None:
    """Return the decoder of a VAE as a function from latents to ``(N, C, Z, Y, X)`` images.

    Parameters
    ----------
    vae : nn.Module
        :class:`viscy_models.vae.BetaVaeMonai` (decoded by MONAI's ``decode_forward``), or a VAE with a
        ``decoder`` module such as :class:`viscy_models.vae.BetaVae25D`. 2-D outputs get a singleton Z.

    Returns
    -------
    Decoder or None
        None (with a warning) when the VAE has no decoder to call.
    """
    if isinstance(vae, BetaVaeMonai):
        monai_vae = vae.model

        def decode(z: Tensor) -> Tensor:
            return monai_vae.decode_forward(z, monai_vae.use_sigmoid)

    elif isinstance(getattr(vae, "decoder", None), nn.Module):
        decode = vae.decoder
    else:
        _logger.warning("%s has no decoder; skipping latent traversals and interpolations.", type(vae).__name__)
        return None

    def decode_volumes(z: Tensor) -> Tensor:
        images = decode(z)
        return images.unsqueeze(2) if images.ndim == 4 else images

    return decode_volumes


def _mid_slices(images: Tensor) -> list[np.ndarray]:
    """Mid-depth slice of the first channel of each ``(C, Z, Y, X)`` image of a batch."""
    return [sample[0] for sample in detach_sample([images[:, :1]], images.shape[0])]


def _group_norms(named_tensors: Iterable[tuple[str, Tensor]], prefix: str) -> dict[str, Tensor]:
    """L2 norms of all tensors together and of the encoder and decoder groups."""
    norms: dict[str, list[Tensor]] = {"": [], **{group: [] for group in _PARAMETER_GROUPS}}
    for name, tensor in named_tensors:
        norm = torch.linalg.vector_norm(tensor.detach())
        norms[""].append(norm)
        for group, pattern in _PARAMETER_GROUPS.items():
            if pattern in name:
                norms[group].append(norm)
    return {
        f"diagnostics/{group + '_' if group else ''}{prefix}": torch.linalg.vector_norm(torch.stack(values))
        for group, values in norms.items()
        if values
    }


class BetaVaeLogger:
    """Logs beta-VAE losses, latent statistics, NaN and gradient diagnostics, and latent-space images.

    Scalars go through ``LightningModule.log`` (every logger, averaged over the epoch and the ranks).
    Latent histograms need TensorBoard and are skipped for other loggers; traversal and interpolation
    grids go to every logger that takes images. Image and histogram methods must run on rank zero only.

    Parameters
    ----------
    latent_dim : int
        Latent size: the denominator of ``latent/utilization`` and the size of the decoded latents.
    histogram_every_n_epochs : int
        Log latent histograms of the first validation batch every this many epochs.
    n_traversal_dims : int
        Latent dimensions traversed (one grid row each).
    n_steps : int
        Images per traversal or interpolation row.
    n_interpolation_pairs : int
        Interpolated latent pairs (one grid row each).
    traversal_range : float
        Each traversed dimension goes from ``-traversal_range`` to ``traversal_range``.
    """

    def __init__(
        self,
        latent_dim: int = 128,
        histogram_every_n_epochs: int = 10,
        n_traversal_dims: int = 8,
        n_steps: int = 11,
        n_interpolation_pairs: int = 3,
        traversal_range: float = 3.0,
    ) -> None:
        self.latent_dim = latent_dim
        self.histogram_every_n_epochs = histogram_every_n_epochs
        self.n_traversal_dims = n_traversal_dims
        self.n_steps = n_steps
        self.n_interpolation_pairs = n_interpolation_pairs
        self.traversal_range = traversal_range

    def log_enhanced_metrics(
        self, module: LightningModule, output: VaeOutput, x: Tensor, stage: str, beta: float, batch_idx: int
    ) -> None:
        """Log one batch's losses, KL weight, latent statistics and NaN diagnostics (epoch means over ranks).

        Keys: ``loss/{stage}/total|reconstruction|kl``, ``beta/{stage}``,
        ``latent/active_dims|effective_dim|utilization|mean_abs|std_avg/{stage}`` (batches of two or more),
        and ``diagnostics/recon_has_nan|recon_has_inf|input_has_nan|latent_has_nan|recon_max_abs/{stage}``
        (epoch maxima). Validation also logs latent histograms every ``histogram_every_n_epochs`` epochs.

        Parameters
        ----------
        module : LightningModule
            The module being trained.
        output : VaeOutput
            What the module's forward returned for ``x``.
        x : Tensor
            The input batch ``(B, C, Z, Y, X)``.
        stage : str
            ``"train"`` or ``"val"``.
        beta : float
            The KL weight in use.
        batch_idx : int
            Index of the batch in the epoch.
        """
        batch_size = x.shape[0]
        z = output["z"].detach()
        recon_x = output["recon_x"].detach()
        module.log(
            f"loss/{stage}/total",
            output["total_loss"].detach(),
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,
            batch_size=batch_size,
        )
        metrics: dict[str, Tensor | float] = {
            f"loss/{stage}/reconstruction": output["recon_loss"].detach(),
            f"loss/{stage}/kl": output["kl_loss"].detach(),
            f"beta/{stage}": beta,
        }
        if batch_size > 1:
            metrics.update(self._latent_statistics(z, stage))
        module.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=True, batch_size=batch_size)
        diagnostics = {
            f"diagnostics/recon_has_nan/{stage}": torch.isnan(recon_x).any().float(),
            f"diagnostics/recon_has_inf/{stage}": torch.isinf(recon_x).any().float(),
            f"diagnostics/input_has_nan/{stage}": torch.isnan(x).any().float(),
            f"diagnostics/latent_has_nan/{stage}": torch.isnan(z).any().float(),
            f"diagnostics/recon_max_abs/{stage}": recon_x.abs().max(),
        }
        module.log_dict(
            diagnostics, on_step=False, on_epoch=True, sync_dist=True, reduce_fx="max", batch_size=batch_size
        )
        histograms_due = module.current_epoch % self.histogram_every_n_epochs == 0
        if stage == "val" and batch_idx == 0 and histograms_due and module.trainer.is_global_zero:
            self.log_latent_histograms(module, z, stage)

    def _latent_statistics(self, z: Tensor, stage: str) -> dict[str, Tensor]:
        variances = z.var(dim=0)
        active_dims = (variances > 0.01).sum().float()
        return {
            f"latent/active_dims/{stage}": active_dims,
            f"latent/effective_dim/{stage}": variances.sum() ** 2 / variances.pow(2).sum().clamp_min(1e-12),
            f"latent/utilization/{stage}": active_dims / self.latent_dim,
            f"latent/mean_abs/{stage}": z.mean(dim=0).abs().mean(),
            f"latent/std_avg/{stage}": z.std(dim=0).mean(),
        }

    def log_gradient_norms(self, module: LightningModule) -> None:
        """Log gradient and parameter L2 norms, in all and of the encoder and decoder (epoch means).

        Call it from ``on_before_optimizer_step``, when the gradients of the step exist. Keys:
        ``diagnostics/grad_norm``, ``diagnostics/encoder_grad_norm``, ``diagnostics/decoder_grad_norm`` and
        the same with ``param_norm``; a group is named by the parameters whose names contain ``encode`` or
        ``decode``.

        Parameters
        ----------
        module : LightningModule
            The module being trained.
        """
        parameters = list(module.named_parameters())
        gradients = [(name, parameter.grad) for name, parameter in parameters if parameter.grad is not None]
        norms = {**_group_norms(gradients, "grad_norm"), **_group_norms(parameters, "param_norm")}
        module.log_dict(norms, on_step=False, on_epoch=True, batch_size=1)

    def log_latent_histograms(self, module: LightningModule, z: Tensor, stage: str) -> None:
        """Log histograms of the first 16 latent dimensions to the TensorBoard loggers (others are skipped).

        Parameters
        ----------
        module : LightningModule
            The module being trained.
        z : Tensor
            Latents ``(B, latent_dim)``.
        stage : str
            Suffix of the histogram names ``latent_distributions/dim_{i}_{stage}``.
        """
        values = z.detach().float().cpu().numpy()
        for logger in module.loggers:
            if not isinstance(logger, TensorBoardLogger):
                _logger.debug("%s cannot log histograms; skipping latent histograms.", type(logger).__name__)
                continue
            for dim in range(min(16, values.shape[1])):
                logger.experiment.add_histogram(
                    f"latent_distributions/dim_{dim}_{stage}", values[:, dim], module.current_epoch
                )

    def log_latent_traversal(self, module: LightningModule, decode: Decoder) -> None:
        """Log ``latent_traversal``: row ``d`` decodes one prior sample with dimension ``d`` swept over the range.

        The prior sample is drawn from a generator seeded by the epoch (the global RNG is untouched).

        Parameters
        ----------
        module : LightningModule
            The module being trained; its ``model`` is put in evaluation mode while decoding.
        decode : Decoder
            From :func:`latent_decoder`.
        """
        generator = torch.Generator().manual_seed(module.current_epoch)
        base = torch.randn(1, self.latent_dim, generator=generator)
        values = torch.linspace(-self.traversal_range, self.traversal_range, self.n_steps)
        latents = []
        for dim in range(min(self.n_traversal_dims, self.latent_dim)):
            z = base.repeat(self.n_steps, 1)
            z[:, dim] = values
            latents.append(z)
        self._log_decoded(module, decode, "latent_traversal", latents)

    def log_latent_interpolation(self, module: LightningModule, decode: Decoder) -> None:
        """Log ``latent_interpolation``: row ``p`` decodes the straight line between two prior samples.

        Parameters
        ----------
        module : LightningModule
            The module being trained; its ``model`` is put in evaluation mode while decoding.
        decode : Decoder
            From :func:`latent_decoder`.
        """
        generator = torch.Generator().manual_seed(module.current_epoch + 1)
        weights = torch.linspace(0, 1, self.n_steps)[:, None]
        latents = []
        for _ in range(self.n_interpolation_pairs):
            start, end = torch.randn(2, 1, self.latent_dim, generator=generator)
            latents.append((1 - weights) * start + weights * end)
        self._log_decoded(module, decode, "latent_interpolation", latents)

    def _log_decoded(self, module: LightningModule, decode: Decoder, key: str, latents: list[Tensor]) -> None:
        """Decode each latent batch into one grid row of mid-depth slices and log the grid."""
        model: nn.Module = module.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                rows = [_mid_slices(decode(z.to(module.device))) for z in latents]
        finally:
            model.train(was_training)
        log_sample_grid(module.loggers, key, rows, module.current_epoch)
