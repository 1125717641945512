import pytest
import timm.models.convnext
import torch
from timm.layers import LayerNorm2d
from timm.models.convnext import ConvNeXtStage
from torch import nn

from viscy_models.components import (
    PixelToVoxelHead,
    PixelToVoxelShuffleHead,
    StemDepthtoChannels,
    UNeXt2Decoder,
    UNeXt2Stem,
    UNeXt2UpStage,
    UnsqueezeHead,
    convnext_decoder_stage,
    icnr_init,
    init_convnext_weights,
)


def test_unext2_stem_folds_depth_into_channels():
    stem = UNeXt2Stem(in_channels=1, out_channels=96, kernel_size=(5, 4, 4), in_stack_depth=5)
    assert stem(torch.rand(1, 1, 5, 64, 64)).shape == (1, 96, 16, 16)


def test_unext2_stem_channel_order_is_channel_major():
    stem = UNeXt2Stem(in_channels=1, out_channels=4, kernel_size=(1, 1, 1), in_stack_depth=2)
    nn.init.ones_(stem.conv.weight)
    nn.init.zeros_(stem.conv.bias)
    with torch.no_grad():
        stem.conv.weight[1] = 10.0
    x = torch.tensor([1.0, 2.0]).reshape(1, 1, 2, 1, 1)
    # conv channel 0 (x1) at depths 0 and 1, then conv channel 1 (x10).
    assert stem(x).flatten().tolist() == [1.0, 2.0, 10.0, 20.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_channels": 1, "out_channels": 96, "kernel_size": (5, 4, 4), "in_stack_depth": 7}, "not divisible"),
        ({"in_channels": 1, "out_channels": 97, "kernel_size": (1, 4, 4), "in_stack_depth": 2}, "out_channels=97"),
    ],
)
def test_unext2_stem_validates_divisibility(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNeXt2Stem(**kwargs)


def test_stem_depth_to_channels_with_deeper_stack():
    stem = StemDepthtoChannels(in_channels=2, in_stack_depth=15, in_channels_encoder=96)
    assert stem.conv.out_channels == 32
    assert stem(torch.rand(1, 2, 15, 64, 64)).shape == (1, 96, 16, 16)


def test_stem_depth_to_channels_reports_missing_channels():
    with pytest.raises(ValueError, match="Stem needs to output 1 more channels"):
        StemDepthtoChannels(in_channels=1, in_stack_depth=10, in_channels_encoder=97)


def test_icnr_init_repeats_each_kernel_over_the_sub_pixels():
    conv = nn.Conv2d(3, 8, kernel_size=3)
    nn.init.zeros_(conv.weight)
    icnr_init(conv, upsample_factor=2, upsample_dims=2)
    weight = conv.weight.detach()
    assert weight.abs().sum() > 0
    for group in range(2):
        block = weight[group * 4 : (group + 1) * 4]
        assert torch.equal(block, block[:1].expand_as(block))
    assert not torch.equal(weight[0], weight[4])


def test_icnr_init_rejects_indivisible_channels():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*2=4"):
        icnr_init(nn.Conv2d(3, 6, kernel_size=1), upsample_factor=2, upsample_dims=2)


def test_icnr_initialized_pixel_shuffle_is_a_nearest_neighbour_resize():
    conv = nn.Conv2d(1, 4, kernel_size=1, bias=False)
    icnr_init(conv, upsample_factor=2, upsample_dims=2)
    x = torch.rand(1, 1, 3, 3)
    y = nn.PixelShuffle(2)(conv(x))
    scale = conv.weight[0, 0, 0, 0]
    expected = (x * scale).repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)
    torch.testing.assert_close(y, expected)


def test_pixel_to_voxel_head_shape():
    head = PixelToVoxelHead(in_channels=224, out_channels=2, out_stack_depth=5, expansion_ratio=4, pool=False)
    assert head(torch.rand(1, 224, 16, 16)).shape == (1, 2, 5, 64, 64)


def test_pixel_to_voxel_head_with_pool_keeps_shape():
    head = PixelToVoxelHead(in_channels=112, out_channels=1, out_stack_depth=5, expansion_ratio=4, pool=True)
    assert head(torch.rand(2, 112, 8, 8)).shape == (2, 1, 5, 32, 32)


def test_pixel_to_voxel_head_rejects_indivisible_channels():
    with pytest.raises(ValueError, match="divisible by 4 \\* \\(out_stack_depth \\+ 2\\) = 28"):
        PixelToVoxelHead(in_channels=100, out_channels=1, out_stack_depth=5, expansion_ratio=4, pool=False)


def test_pixel_to_voxel_shuffle_head_places_channels_as_out_then_depth():
    head = PixelToVoxelShuffleHead(in_channels=2 * 3 * 4, out_channels=2, out_stack_depth=3, xy_scaling=2)
    x = torch.arange(24.0).reshape(1, 24, 1, 1)
    y = head(x)
    assert y.shape == (1, 2, 3, 2, 2)
    # channel block (o * depth + d) holds the 4 sub-pixels of output channel o at depth d
    assert y[0, 1, 2].flatten().tolist() == [20.0, 21.0, 22.0, 23.0]


def test_pixel_to_voxel_shuffle_head_validates_channels():
    with pytest.raises(ValueError, match="must equal out_stack_depth"):
        PixelToVoxelShuffleHead(in_channels=100, out_channels=2, out_stack_depth=5, xy_scaling=4)


def test_unsqueeze_head():
    assert UnsqueezeHead()(torch.rand(2, 3, 8, 8)).shape == (2, 3, 1, 8, 8)


def _convnext_layers() -> nn.Module:
    """A freshly built ConvNeXt-V2 stage (LayerNorm2d, depthwise and 1x1 convs, GRN), a Linear and a bias-free conv."""
    stage = ConvNeXtStage(
        16, 32, stride=2, depth=2, ls_init_value=None, conv_mlp=True, use_grn=True, norm_layer=LayerNorm2d
    )
    return nn.Sequential(stage, nn.Linear(32, 8), nn.Conv2d(8, 8, 3, bias=False), LayerNorm2d(8))


def test_init_convnext_weights_draws_what_timm_draws():
    """Catches drift from timm's private ConvNeXt initialization, which this package no longer imports."""
    timm_init = getattr(timm.models.convnext, "_init_weights", None)
    if timm_init is None:
        pytest.skip("this timm has no timm.models.convnext._init_weights to compare with")
    ours, theirs = _convnext_layers(), _convnext_layers()
    torch.manual_seed(7)
    ours.apply(init_convnext_weights)
    after_ours = torch.rand(1)
    torch.manual_seed(7)
    theirs.apply(timm_init)
    after_theirs = torch.rand(1)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for key, value in ours.state_dict().items():
        assert torch.equal(value, theirs.state_dict()[key]), key
    assert torch.equal(after_ours, after_theirs)  # the same number of random draws


def test_init_convnext_weights_values():
    layers = _convnext_layers()
    for module in layers.modules():
        if isinstance(module, nn.LayerNorm):
            nn.init.normal_(module.weight)
    layers.apply(init_convnext_weights)
    linear, conv, norm = layers[1], layers[2], layers[3]
    assert torch.equal(linear.bias, torch.zeros(8))
    assert linear.weight.abs().max() <= 2.0
    assert 0.015 < linear.weight.std() < 0.025
    assert conv.bias is None
    assert 0.015 < conv.weight.std() < 0.025
    assert torch.equal(norm.weight, torch.ones(8))
    assert torch.equal(norm.bias, torch.zeros(8))
    assert torch.equal(layers[0].blocks[0].mlp.grn.weight, torch.zeros(128))  # other layers are left alone


def test_convnext_decoder_stage_projects_channels():
    stage = convnext_decoder_stage(96, 48, conv_blocks=2, icnr_upsample_factor=2)
    assert stage(torch.rand(1, 96, 8, 8)).shape == (1, 48, 8, 8)
    assert stage.blocks[0].mlp.fc1.weight.shape == (192, 48, 1, 1)


@pytest.mark.parametrize("mode", ["pixelshuffle", "deconv"])
def test_up_stage_upsamples_and_merges_skip(mode):
    stage = UNeXt2UpStage(
        in_channels=192,
        skip_channels=96,
        out_channels=96,
        scale_factor=2,
        mode=mode,
        conv_blocks=2,
        norm_name="instance",
        upsample_pre_conv=None,
    )
    assert stage(torch.rand(1, 192, 8, 8), torch.rand(1, 96, 16, 16)).shape == (1, 96, 16, 16)


def test_up_stage_rejects_unknown_mode():
    with pytest.raises(ValueError, match="choose one of \\('deconv', 'pixelshuffle'\\)"):
        UNeXt2UpStage(16, 8, 8, 2, mode="nearest", conv_blocks=1, norm_name="instance", upsample_pre_conv=None)


@pytest.mark.parametrize("mode", ["pixelshuffle", "deconv"])
def test_decoder_does_not_mutate_its_input(mode):
    """Regression: the reference appended None to the caller's feature list."""
    decoder = UNeXt2Decoder(
        [64, 32, 16, 8], norm_name="instance", mode=mode, conv_blocks=1, strides=(2, 2, 2), upsample_pre_conv=None
    )
    features = [torch.rand(1, c, s, s) for c, s in [(64, 4), (32, 8), (16, 16), (8, 32)]]
    original = list(features)
    out = decoder(features)
    assert out.shape == (1, 8, 32, 32)
    assert len(features) == 4
    assert all(a is b for a, b in zip(features, original, strict=True))
    assert decoder(tuple(features)).shape == (1, 8, 32, 32)


def test_decoder_rejects_wrong_number_of_features():
    decoder = UNeXt2Decoder([64, 32, 16], "instance", "pixelshuffle", 1, (2, 2), None)
    with pytest.raises(ValueError, match="needs 3 feature maps"):
        decoder([torch.rand(1, 64, 4, 4), torch.rand(1, 32, 8, 8)])


def test_decoder_needs_a_stride_per_stage():
    with pytest.raises(ValueError, match="Need 3 strides"):
        UNeXt2Decoder([64, 32, 16, 8], "instance", "pixelshuffle", 1, (2, 2), None)
