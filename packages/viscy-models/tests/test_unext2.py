import pytest
import torch

from viscy_models import UNeXt2


@pytest.fixture(scope="module")
def atto() -> UNeXt2:
    return UNeXt2(backbone="convnextv2_atto")


def test_defaults():
    with torch.device("meta"):
        model = UNeXt2()
    assert model.out_stack_depth == 5
    assert model.num_blocks == 6
    assert model.stem.conv.weight.shape == (96, 1, 5, 4, 4)


def test_atto_preserves_shape(atto):
    atto.eval()
    assert atto(torch.rand(2, 1, 5, 64, 64)).shape == (2, 1, 5, 64, 64)


def test_multichannel_and_output_depth():
    model = UNeXt2(in_channels=3, out_channels=2, in_stack_depth=5, out_stack_depth=3, backbone="convnextv2_atto")
    assert model(torch.rand(1, 3, 5, 64, 64)).shape == (1, 2, 3, 64, 64)


def test_2d_input_with_single_slice_stem():
    model = UNeXt2(in_stack_depth=1, stem_kernel_size=(1, 4, 4), backbone="convnextv2_atto")
    assert model(torch.rand(1, 1, 1, 32, 32)).shape == (1, 1, 1, 32, 32)


def test_deconv_decoder_works():
    """Regression: decoder_mode="deconv" had a channel mismatch (strict xfail in the reference)."""
    model = UNeXt2(backbone="convnextv2_atto", decoder_mode="deconv", decoder_conv_blocks=1)
    y = model(torch.rand(2, 1, 5, 64, 64))
    assert y.shape == (2, 1, 5, 64, 64)
    y.mean().backward()
    assert model.decoder.decoder_stages[0].upsample.deconv.weight.grad is not None


def test_gradients_reach_every_parameter(atto, params_without_grad):
    atto.train()
    atto.zero_grad()
    atto(torch.rand(2, 1, 5, 64, 64)).square().mean().backward()
    assert params_without_grad(atto) == []


def test_eval_is_deterministic(atto):
    atto.eval()
    x = torch.rand(1, 1, 5, 64, 64)
    with torch.no_grad():
        assert torch.equal(atto(x), atto(x))


def test_drop_path_is_passed_to_the_encoder():
    model = UNeXt2(backbone="convnextv2_atto", drop_path_rate=0.2)
    assert model.encoder_stages.stages_3.blocks[-1].drop_path.drop_prob == pytest.approx(0.2)


def test_depth_not_divisible_by_stem_kernel():
    with pytest.raises(ValueError, match="not divisible"):
        UNeXt2(in_stack_depth=7)


def test_non_convnext_backbone_is_rejected_with_choices():
    with pytest.raises(ValueError, match=r"UNeXt2 does not support backbone 'resnet50'.*convnextv2_tiny"):
        UNeXt2(backbone="resnet50")


def test_input_size_not_divisible_by_32(atto):
    with pytest.raises(ValueError, match="divisible by 32"):
        atto(torch.rand(1, 1, 5, 80, 80))


def test_wrong_stack_depth(atto):
    with pytest.raises(ValueError, match=r"expects input \(B, C, 5, H, W\)"):
        atto(torch.rand(1, 1, 3, 64, 64))
