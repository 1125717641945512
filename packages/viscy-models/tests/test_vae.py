import pytest
import torch

from viscy_models import BetaVae25D, BetaVaeMonai
from viscy_models.vae import VaeUpStage

SMALL_RESNET = {"in_channels": 1, "in_stack_depth": 5, "out_stack_depth": 3, "input_spatial_size": (64, 64)}
SMALL_CONVNEXT = {
    "backbone": "convnext_atto",
    "in_channels": 2,
    "in_stack_depth": 5,
    "out_stack_depth": 5,
    "input_spatial_size": (64, 64),
    "latent_dim": 64,
    "decoder_stages": 3,
    "stem_kernel_size": (5, 4, 4),
    "stem_stride": (5, 4, 4),
}


@pytest.fixture(scope="module")
def convnext_vae() -> BetaVae25D:
    return BetaVae25D(**SMALL_CONVNEXT)


def test_beta_vae_25d_default_reconstructs_the_input_size():
    with torch.device("meta"):
        model = BetaVae25D()
        out = model(torch.empty(1, 2, 16, 256, 256, device="meta"))
    assert out.recon_x.shape == (1, 2, 16, 256, 256)
    assert out.z.shape == (1, 1024)


def test_beta_vae_25d_resnet_recon_matches_input_xy():
    model = BetaVae25D(**SMALL_RESNET).eval()
    out = model(torch.rand(2, 1, 5, 64, 64))
    assert out.recon_x.shape == (2, 1, 3, 64, 64)
    assert out.mean.shape == out.logvar.shape == out.z.shape == (2, 1024)


def test_beta_vae_25d_convnext_recon_matches_input_xy(convnext_vae):
    convnext_vae.eval()
    out = convnext_vae(torch.rand(2, 2, 5, 64, 64))
    assert out.recon_x.shape == (2, 2, 5, 64, 64)
    assert out.z.shape == (2, 64)


@pytest.mark.parametrize(
    ("kwargs", "needed"),
    [({"decoder_stages": 3}, 4), ({**SMALL_CONVNEXT, "decoder_stages": 4}, 3)],
)
def test_beta_vae_25d_rejects_decoder_stages_that_change_the_output_size(kwargs, needed):
    """Regression: the reference returned 64x64 reconstructions of 128x128 inputs (decoder_stages=3, resnet50)."""
    kwargs = {**SMALL_RESNET, **kwargs}
    with pytest.raises(ValueError, match=f"Use decoder_stages={needed}"), torch.device("meta"):
        BetaVae25D(**kwargs)


def test_beta_vae_25d_reports_when_no_decoder_stages_fit():
    with pytest.raises(ValueError, match="No number of decoder stages"), torch.device("meta"):
        BetaVae25D(
            **{**SMALL_RESNET, "stem_kernel_size": (5, 3, 3), "stem_stride": (5, 3, 3), "input_spatial_size": (48, 48)}
        )


def test_beta_vae_25d_validates_sizes():
    with pytest.raises(ValueError, match="must be divisible by the encoder's XY reduction 64"), torch.device("meta"):
        BetaVae25D(**{**SMALL_RESNET, "input_spatial_size": (96, 96)})
    with pytest.raises(ValueError, match="stem_stride must be equal in Y and X"), torch.device("meta"):
        BetaVae25D(**{**SMALL_RESNET, "stem_stride": (2, 4, 2)})
    with pytest.raises(ValueError, match="does not support backbone 'vit_small_patch16_224'"), torch.device("meta"):
        BetaVae25D(backbone="vit_small_patch16_224")


def test_beta_vae_25d_rejects_other_input_sizes(convnext_vae):
    with pytest.raises(ValueError, match=r"input_spatial_size=\(64, 64\), got \(32, 32\)"):
        convnext_vae(torch.rand(2, 2, 5, 32, 32))


def test_beta_vae_25d_samples_in_training_and_uses_the_mean_in_eval(convnext_vae):
    x = torch.rand(2, 2, 5, 64, 64)
    convnext_vae.train()
    out = convnext_vae(x)
    assert not torch.equal(out.z, out.mean)
    convnext_vae.eval()
    with torch.no_grad():
        first, second = convnext_vae(x), convnext_vae(x)
    assert torch.equal(first.z, first.mean)
    assert torch.equal(first.recon_x, second.recon_x)


def test_beta_vae_25d_gradients_reach_every_parameter(convnext_vae, params_without_grad):
    convnext_vae.train()
    convnext_vae.zero_grad()
    out = convnext_vae(torch.rand(2, 2, 5, 64, 64))
    (out.recon_x.square().mean() + out.z.square().mean()).backward()
    assert params_without_grad(convnext_vae) == []


@pytest.mark.parametrize(
    ("spatial_dims", "in_shape"),
    [(2, (1, 32, 32)), (3, (1, 16, 16, 16))],
)
def test_beta_vae_monai_shapes(spatial_dims, in_shape):
    model = BetaVaeMonai(spatial_dims, in_shape, 1, 16, (4, 8), (2, 2))
    out = model(torch.rand(2, *in_shape))
    assert out.recon_x.shape == (2, *in_shape)
    assert out.mean.shape == out.logvar.shape == out.z.shape == (2, 16)


def test_beta_vae_monai_norm_choices():
    batch = BetaVaeMonai(2, (1, 16, 16), 1, 8, (4, 8), (2, 2), num_res_units=1, norm="batch")
    assert any("running_mean" in key for key in batch.state_dict())
    with pytest.raises(ValueError, match="Unknown norm 'group'; choose one of \\('batch', 'instance'\\)"):
        BetaVaeMonai(2, (1, 16, 16), 1, 8, (4, 8), (2, 2), norm="group")


def test_beta_vae_monai_eval_is_deterministic_and_gradients_flow(params_without_grad):
    model = BetaVaeMonai(2, (1, 16, 16), 1, 8, (4, 8), (2, 2), num_res_units=1, norm="batch")
    out = model(torch.rand(2, 1, 16, 16))
    (out.recon_x.square().mean() + out.z.square().mean()).backward()
    assert params_without_grad(model) == []
    model.eval()
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(model(x).recon_x, model(x).recon_x)


@pytest.mark.parametrize(
    ("mode", "upsample_key", "first_unit_in"),
    [("pixelshuffle", None, 8), ("deconv", "upsample.deconv.weight", 16)],
)
def test_vae_up_stage_upsamples_in_both_modes(mode, upsample_key, first_unit_in):
    stage = VaeUpStage(32, 16, scale_factor=2, mode=mode, conv_blocks=2, norm_name="batch", upsample_pre_conv=None)
    assert stage(torch.rand(2, 32, 4, 4)).shape == (2, 16, 8, 8)
    assert stage.conv[0].conv.unit0.conv.in_channels == first_unit_in
    upsample_keys = [key for key in stage.state_dict() if key.startswith("upsample.")]
    assert upsample_keys == ([] if upsample_key is None else [upsample_key, "upsample.deconv.bias"])


def test_vae_up_stage_rejects_unknown_mode():
    with pytest.raises(ValueError, match=r"mode 'nearest'; choose one of \('deconv', 'pixelshuffle'\)"):
        VaeUpStage(32, 16, 2, mode="nearest", conv_blocks=1, norm_name="batch", upsample_pre_conv=None)
