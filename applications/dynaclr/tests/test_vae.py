import itertools
import logging
import math

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dynaclr.vae import MIN_BETA, BetaVaeModule, kl_divergence, reconstruction_loss, scheduled_beta
from dynaclr.vae_logging import BetaVaeLogger, latent_decoder
from viscy_models.vae import BetaVae25D, BetaVaeMonai

from .conftest import cpu_trainer


class _Patches(Dataset):
    def __init__(self, length: int, shape: tuple[int, ...]) -> None:
        self.images = torch.rand((length, *shape), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"anchor": self.images[index], "index": {"fov_name": "A/1/0", "track_id": index, "t": 0}}


def _loader(shape=(1, 1, 16, 16), length=8, batch_size=4) -> DataLoader:
    return DataLoader(_Patches(length, shape), batch_size=batch_size)


def _monai_2d(latent_size: int = 4) -> BetaVaeMonai:
    return BetaVaeMonai(
        spatial_dims=2, in_shape=(1, 16, 16), out_channels=1, latent_size=latent_size, channels=(4, 8), strides=(2, 2)
    )


@pytest.fixture(scope="module")
def vae_25d() -> BetaVae25D:
    return BetaVae25D(
        backbone="resnet18",
        in_channels=1,
        in_stack_depth=4,
        out_stack_depth=4,
        latent_dim=8,
        input_spatial_size=(64, 64),
        stem_kernel_size=(4, 2, 2),
        stem_stride=(4, 2, 2),
        decoder_stages=3,
    )


@pytest.mark.parametrize(
    ("schedule", "epoch", "expected"),
    [
        (None, 0, 1.0),
        (None, 7, 1.0),
        ("linear", 0, 0.1),
        ("linear", 5, 0.55),
        ("linear", 9, 0.91),
        ("linear", 10, 1.0),
        ("linear", 30, 1.0),
        ("cosine", 0, 0.1),
        ("cosine", 5, 0.55),
        ("cosine", 10, 1.0),
        ("warmup", 0, 0.1),
        ("warmup", 9, 0.1),
        ("warmup", 10, 1.0),
    ],
)
def test_beta_schedule_values(schedule, epoch, expected):
    assert scheduled_beta(epoch, beta=1.0, schedule=schedule, beta_min=0.1, warmup_epochs=10) == pytest.approx(expected)


def test_cosine_schedule_starts_slower_and_ends_faster_than_linear():
    linear = [scheduled_beta(e, 1.0, "linear", 0.1, 10) for e in range(10)]
    cosine = [scheduled_beta(e, 1.0, "cosine", 0.1, 10) for e in range(10)]
    assert cosine[2] < linear[2]
    assert cosine[8] > linear[8]
    assert cosine[2] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.8)))
    assert all(a < b for a, b in itertools.pairwise(cosine))


def test_beta_is_floored():
    assert scheduled_beta(0, beta=0.0, schedule=None, beta_min=0.0, warmup_epochs=5) == MIN_BETA
    assert scheduled_beta(0, beta=1.0, schedule="linear", beta_min=0.0, warmup_epochs=5) == MIN_BETA


def test_kl_divergence_matches_closed_form():
    generator = torch.Generator().manual_seed(1)
    mu = torch.randn(6, 5, generator=generator)
    logvar = torch.randn(6, 5, generator=generator)
    closed_form = 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum(dim=1).mean()
    posterior = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    reference = torch.distributions.kl_divergence(posterior, prior).sum(dim=1).mean()
    assert kl_divergence(mu, logvar) == pytest.approx(closed_form.item(), rel=1e-6)
    assert kl_divergence(mu, logvar) == pytest.approx(reference.item(), rel=1e-5)
    assert kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)) == 0


def test_kl_divergence_clamps_the_log_variance_term():
    logvar = torch.full((2, 1), -30.0)
    expected = -0.5 * (1 - 20 - math.exp(-30))
    assert kl_divergence(torch.zeros(2, 1), logvar).item() == pytest.approx(expected)


def test_reconstruction_loss_is_per_image_sum_for_both_mse_reductions():
    generator = torch.Generator().manual_seed(2)
    reconstruction, target = torch.rand(4, 2, 3, 5, 5, generator=generator), torch.rand(4, 2, 3, 5, 5)
    per_image_sum = ((reconstruction - target) ** 2).flatten(1).sum(dim=1).mean()
    for reduction in ("sum", "mean"):
        loss = reconstruction_loss(nn.MSELoss(reduction=reduction), reconstruction, target)
        assert loss.item() == pytest.approx(per_image_sum.item(), rel=1e-5)
    l1 = reconstruction_loss(nn.L1Loss(), reconstruction, target)
    assert l1.item() == pytest.approx(nn.functional.l1_loss(reconstruction, target).item())


def test_default_loss_is_a_new_sum_mse_per_module():
    first, second = BetaVaeModule(_monai_2d()), BetaVaeModule(_monai_2d())
    assert isinstance(first.loss_function, nn.MSELoss)
    assert first.loss_function.reduction == "sum"
    assert first.loss_function is not second.loss_function


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta_schedule": "exponential"}, "'linear', 'cosine', 'warmup', None"),
        ({"lr_schedule": "Step"}, "'Constant', 'WarmupCosine'"),
        ({"beta_warmup_epochs": -1}, "beta_warmup_epochs"),
        ({"log_enhanced_visualizations_frequency": 0}, "log_enhanced_visualizations_frequency"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BetaVaeModule(_monai_2d(), **kwargs)


def test_monai_2d_vae_squeezes_and_restores_singleton_z():
    module = BetaVaeModule(_monai_2d(), beta=0.5).eval()
    x = torch.rand(3, 1, 1, 16, 16)
    output = module(x)
    assert output["recon_x"].shape == x.shape
    assert output["z"].shape == (3, 4)
    expected_recon = ((output["recon_x"] - x) ** 2).sum() / 3
    torch.testing.assert_close(output["recon_loss"], expected_recon)
    torch.testing.assert_close(output["kl_loss"], kl_divergence(output["mu"], output["logvar"]))
    torch.testing.assert_close(output["total_loss"], output["recon_loss"] + 0.5 * output["kl_loss"])
    with pytest.raises(ValueError, match=r"\(B, C, 1, Y, X\).*\(3, 1, 2, 16, 16\)"):
        module(torch.rand(3, 1, 2, 16, 16))


def test_3d_monai_vae_keeps_its_input_shape():
    vae = BetaVaeMonai(
        spatial_dims=3, in_shape=(1, 4, 8, 8), out_channels=1, latent_size=3, channels=(4, 8), strides=(2, 2)
    )
    output = BetaVaeModule(vae)(torch.rand(2, 1, 4, 8, 8))
    assert output["recon_x"].shape == (2, 1, 4, 8, 8)


def test_latent_decoder_of_each_vae(caplog, vae_25d):
    assert latent_decoder(_monai_2d(latent_size=4))(torch.zeros(2, 4)).shape == (2, 1, 1, 16, 16)
    assert latent_decoder(vae_25d)(torch.zeros(1, 8)).shape == (1, 1, 4, 64, 64)
    with caplog.at_level(logging.WARNING):
        assert latent_decoder(nn.Linear(2, 2)) is None
    assert "has no decoder" in caplog.text


def test_traversal_and_interpolation_latents():
    module = BetaVaeModule(_monai_2d())
    seen = []

    def decode(z):
        seen.append(z.clone())
        return torch.rand(z.shape[0], 1, 1, 4, 4)

    vae_logger = BetaVaeLogger(latent_dim=4, n_traversal_dims=8, n_steps=5, n_interpolation_pairs=2)
    vae_logger.log_latent_traversal(module, decode)
    assert len(seen) == 4  # min(n_traversal_dims, latent_dim) rows
    for dim, z in enumerate(seen):
        torch.testing.assert_close(z[:, dim], torch.linspace(-3, 3, 5))
        others = [d for d in range(4) if d != dim]
        assert torch.all(z[:, others] == z[:1, others])
    seen.clear()
    vae_logger.log_latent_interpolation(module, decode)
    assert len(seen) == 2
    for z in seen:
        steps = z[1:] - z[:-1]
        torch.testing.assert_close(steps, steps[:1].expand_as(steps))  # evenly spaced on a straight line
    assert module.model.training, "decoding restores the VAE's mode"


class _LearningRates(Callback):
    def __init__(self) -> None:
        self.values = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.values.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_fit_with_tensorboard_logs_metrics_images_and_schedules(tmp_path):
    module = BetaVaeModule(
        _monai_2d(),
        beta_schedule="linear",
        beta_min=0.1,
        beta_warmup_epochs=2,
        lr=1e-3,
        lr_schedule="WarmupCosine",
        lr_warmup_epochs=1,
        log_enhanced_visualizations=True,
        log_enhanced_visualizations_frequency=1,
        example_input_array_shape=(1, 1, 1, 16, 16),
    )
    learning_rates = _LearningRates()
    logger = TensorBoardLogger(tmp_path, name="vae")
    trainer = cpu_trainer(tmp_path, max_epochs=2, logger=logger, callbacks=[learning_rates], log_every_n_steps=1)
    trainer.fit(module, train_dataloaders=_loader(), val_dataloaders=_loader())

    assert learning_rates.values == pytest.approx([0.5e-3, 1e-3])
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}
    for stage in ("train", "val"):
        for key in ("total", "reconstruction", "kl"):
            assert math.isfinite(metrics[f"loss/{stage}/{key}"])
        assert metrics[f"beta/{stage}"] == pytest.approx(0.55)  # epoch 1 of a 2-epoch linear warm-up
        assert metrics[f"diagnostics/recon_has_nan/{stage}"] == 0
        assert metrics[f"latent/utilization/{stage}"] == pytest.approx(metrics[f"latent/active_dims/{stage}"] / 4)
    for group in ("", "encoder_", "decoder_"):
        assert metrics[f"diagnostics/{group}grad_norm"] > 0
        assert metrics[f"diagnostics/{group}param_norm"] > 0
    total = metrics["loss/val/total"]
    assert total == pytest.approx(metrics["loss/val/reconstruction"] + 0.55 * metrics["loss/val/kl"], rel=1e-5)

    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "histograms": 0})
    events.Reload()
    images = events.Tags()["images"]
    for key in ("train_reconstructions", "val_reconstructions", "latent_traversal", "latent_interpolation"):
        assert key in images
    assert [image.step for image in events.Images("val_reconstructions")] == [0, 1]  # not the sanity check
    traversal = events.Images("latent_traversal")
    assert [image.step for image in traversal] == [1]  # epoch 1 only: never at epoch 0
    assert (traversal[0].height, traversal[0].width) == (4 * 16, 11 * 16)  # latent dims x steps
    assert "latent_distributions/dim_0_val" in events.Tags()["histograms"]


def test_fit_without_logger_skips_images(tmp_path):
    module = BetaVaeModule(_monai_2d(), log_enhanced_visualizations=True, log_enhanced_visualizations_frequency=1)
    trainer = cpu_trainer(tmp_path, max_epochs=2, limit_train_batches=1, limit_val_batches=1, logger=False)
    trainer.fit(module, train_dataloaders=_loader(), val_dataloaders=_loader())
    assert math.isfinite(float(trainer.callback_metrics["loss/val/total"]))
    assert module.training_step_outputs == module.validation_step_outputs == []


def test_fast_dev_run_and_predict_25d(tmp_path, vae_25d):
    module = BetaVaeModule(vae_25d, example_input_array_shape=(1, 1, 4, 64, 64))
    loader = _loader(shape=(1, 4, 64, 64), length=4, batch_size=2)
    trainer = cpu_trainer(tmp_path, fast_dev_run=True, logger=False)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    assert math.isfinite(float(trainer.callback_metrics["loss/train/total"]))

    first = trainer.predict(module, dataloaders=loader)[0]
    assert first["latent"].shape == (2, 8)
    assert first["reconstruction"].shape == (2, 1, 4, 64, 64)
    assert first["index"]["track_id"].tolist() == [0, 1]
    module.eval()
    with torch.no_grad():
        expected = module.model(next(iter(loader))["anchor"])
    np.testing.assert_allclose(first["latent"].numpy(), expected.mean.numpy(), rtol=1e-5, atol=1e-6)
