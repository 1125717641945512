import hashlib
import inspect

import pytest
import torch

from viscy_models import FullyConvolutionalMAE
from viscy_models.unet.fcmae import (
    MaskedAdaptiveProjection,
    MaskedConvNeXtV2Block,
    MaskedConvNeXtV2Stage,
    MaskedMultiscaleEncoder,
    generate_mask,
    masked_patchify,
    masked_unpatchify,
    upsample_mask,
)

SMALL = {"encoder_blocks": (1, 1, 1, 1), "dims": (16, 32, 64, 128)}


def test_generate_mask_masks_exactly_the_ratio():
    mask = generate_mask((4, 1, 256, 256), stride=32, mask_ratio=0.6)
    assert mask.shape == (4, 1, 8, 8)
    assert mask.dtype == torch.bool
    assert mask.flatten(1).sum(1).tolist() == [int(64 * 0.6)] * 4


def test_generate_mask_is_reproducible_with_a_generator():
    a = generate_mask((2, 1, 128, 128), 32, 0.5, generator=torch.Generator().manual_seed(3))
    b = generate_mask((2, 1, 128, 128), 32, 0.5, generator=torch.Generator().manual_seed(3))
    c = generate_mask((2, 1, 128, 128), 32, 0.5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    ("shape", "ratio", "match"),
    [((1, 1, 64, 64), 1.5, "mask_ratio must be in \\[0, 1\\], got 1.5"), ((1, 1, 48, 64), 0.5, "not divisible")],
)
def test_generate_mask_validates(shape, ratio, match):
    with pytest.raises(ValueError, match=match):
        generate_mask(shape, 32, ratio)


def test_upsample_mask():
    mask = torch.tensor([[True, False], [False, True]]).reshape(1, 1, 2, 2)
    up = upsample_mask(mask, (4, 4))
    assert up.shape == (1, 1, 4, 4)
    assert up[0, 0, :2, :2].all()
    assert not up[0, 0, :2, 2:].any()
    with pytest.raises(ValueError, match="Cannot upsample"):
        upsample_mask(mask, (5, 4))


def test_patchify_round_trip_without_mask():
    x = torch.rand(2, 3, 4, 5)
    tokens = masked_patchify(x)
    assert tokens.shape == (2, 20, 3)
    assert torch.equal(masked_unpatchify(tokens, x.shape), x)


def test_patchify_round_trip_with_mask_zeroes_masked_pixels():
    x = torch.rand(2, 3, 8, 8)
    unmasked = ~upsample_mask(generate_mask((2, 1, 8, 8), 4, 0.5), (8, 8))
    tokens = masked_patchify(x, unmasked)
    assert tokens.shape == (2, 32, 3)
    restored = masked_unpatchify(tokens, x.shape, unmasked)
    assert torch.equal(restored, x * unmasked)


def test_masked_block_with_all_visible_mask_equals_no_mask():
    block = MaskedConvNeXtV2Block(16)
    torch.nn.init.normal_(block.mlp.grn.weight)
    x = torch.rand(2, 16, 8, 8)
    torch.testing.assert_close(block(x, torch.ones(2, 1, 8, 8, dtype=torch.bool)), block(x))


def test_masked_block_does_not_modify_its_input():
    """Regression: the reference multiplied the caller's tensor by the mask in place."""
    block = MaskedConvNeXtV2Block(8)
    x = torch.rand(1, 8, 8, 8)
    before = x.clone()
    unmasked = ~upsample_mask(generate_mask((1, 1, 8, 8), 4, 0.5), (8, 8))
    y = block(x, unmasked)
    assert torch.equal(x, before)
    # masked pixels only carry the (zeroed) shortcut: they are exactly zero
    assert torch.equal(y * ~unmasked, torch.zeros_like(y))


def test_masked_block_ignores_masked_pixel_values():
    block = MaskedConvNeXtV2Block(8)
    torch.nn.init.normal_(block.mlp.grn.weight)
    unmasked = ~upsample_mask(generate_mask((1, 1, 8, 8), 4, 0.5), (8, 8))
    x = torch.rand(1, 8, 8, 8)
    noisy = torch.where(unmasked, x, torch.randn_like(x) * 100)
    torch.testing.assert_close(block(x, unmasked), block(noisy, unmasked))


def test_masked_stage_differs_from_unmasked():
    stage = MaskedConvNeXtV2Stage(8, 16, num_blocks=2)
    x = torch.rand(1, 8, 16, 16)
    unmasked = ~upsample_mask(generate_mask((1, 1, 8, 8), 4, 0.5), (8, 8))
    assert stage(x).shape == (1, 16, 8, 8)
    assert not torch.allclose(stage(x, unmasked), stage(x))


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (
            MaskedConvNeXtV2Block,
            "(in_channels, out_channels=None, kernel_size=7, stride=1, mlp_ratio=4, drop_path=0.0)",
        ),
        (
            MaskedConvNeXtV2Stage,
            "(in_channels, out_channels, kernel_size=7, stride=2, num_blocks=2, drop_path_rates=None)",
        ),
        (MaskedAdaptiveProjection, "(in_channels, out_channels, kernel_size_2d=4, kernel_depth=5, in_stack_depth=5)"),
    ],
)
def test_building_blocks_take_the_reference_arguments(cls, expected):
    parameters = inspect.signature(cls).parameters.values()
    assert f"({', '.join(str(p.replace(annotation=inspect.Parameter.empty)) for p in parameters)})" == expected


def _coarse_unmasked(batch: int, size: int) -> torch.BoolTensor:
    """A half-masked ``(batch, 1, size, size)`` visibility grid."""
    return ~generate_mask((batch, 1, size, size), 1, 0.5, generator=torch.Generator().manual_seed(5))


def test_block_with_reference_arguments_changes_channels_and_stride():
    block = MaskedConvNeXtV2Block(8, 16, kernel_size=3, stride=2, mlp_ratio=2, drop_path=0.1).eval()
    assert [(key, tuple(value.shape)) for key, value in block.state_dict().items()] == [
        ("dwconv.weight", (16, 1, 3, 3)),
        ("layernorm.weight", (16,)),
        ("layernorm.bias", (16,)),
        ("mlp.fc1.weight", (32, 16)),
        ("mlp.fc1.bias", (32,)),
        ("mlp.grn.weight", (32,)),
        ("mlp.grn.bias", (32,)),
        ("mlp.fc2.weight", (16, 32)),
        ("mlp.fc2.bias", (16,)),
        ("shortcut.conv.weight", (16, 8, 1, 1)),
    ]
    torch.nn.init.normal_(block.mlp.grn.weight)
    x = torch.rand(2, 8, 16, 16)
    assert block(x).shape == (2, 16, 8, 8)
    unmasked = _coarse_unmasked(2, 4)  # coarser than the 8x8 output: the block upsamples it
    y = block(x, unmasked)
    visible = upsample_mask(unmasked, (8, 8))
    assert torch.equal(y * ~visible, torch.zeros_like(y))
    noisy = torch.where(upsample_mask(unmasked, (16, 16)), x, torch.randn_like(x) * 100)
    torch.testing.assert_close(block(noisy, unmasked), y)


def test_block_rejects_output_channels_that_are_not_a_multiple():
    with pytest.raises(ValueError, match="out_channels=12 must be a multiple of in_channels=8"):
        MaskedConvNeXtV2Block(8, 12)


def test_stage_kernel_size_is_the_blocks_depthwise_kernel():
    stage = MaskedConvNeXtV2Stage(8, 16, kernel_size=3, stride=2, num_blocks=3, drop_path_rates=(0.0, 0.1, 0.2))
    assert [block.dwconv.kernel_size for block in stage.blocks] == [(3, 3)] * 3
    assert stage.downsample[1].kernel_size == (2, 2)
    assert stage.downsample[1].stride == (2, 2)
    assert [type(block.drop_path).__name__ for block in stage.blocks] == ["Identity", "DropPath", "DropPath"]
    assert MaskedConvNeXtV2Stage(8, 8).blocks[0].dwconv.kernel_size == (7, 7)
    assert isinstance(MaskedConvNeXtV2Stage(8, 8, stride=1).downsample, torch.nn.Identity)


def test_stage_rejects_a_wrong_number_of_drop_path_rates():
    with pytest.raises(ValueError, match="Need 2 drop path rates, got 1"):
        MaskedConvNeXtV2Stage(8, 16, drop_path_rates=(0.1,))


def test_stage_upsamples_a_coarse_mask_itself():
    stage = MaskedConvNeXtV2Stage(8, 16, kernel_size=5, num_blocks=2).eval()
    for block in stage.blocks:
        torch.nn.init.normal_(block.mlp.grn.weight)
    x = torch.rand(2, 8, 32, 32)
    unmasked = _coarse_unmasked(2, 4)
    y = stage(x, unmasked)
    assert y.shape == (2, 16, 16, 16)
    torch.testing.assert_close(y, stage(x, upsample_mask(unmasked, (16, 16))))
    assert torch.equal(y * ~upsample_mask(unmasked, (16, 16)), torch.zeros_like(y))


def test_stage_rejects_a_mask_it_cannot_upsample():
    with pytest.raises(ValueError, match="Cannot upsample a mask of size \\(3, 3\\) to \\(8, 8\\)"):
        MaskedConvNeXtV2Stage(8, 16)(torch.rand(1, 8, 16, 16), torch.ones(1, 1, 3, 3, dtype=torch.bool))


@pytest.mark.parametrize("depth", [5, 1])
def test_projection_upsamples_a_coarse_mask_itself(depth):
    projection = MaskedAdaptiveProjection(1, 16, kernel_size_2d=4, kernel_depth=5, in_stack_depth=5)
    x = torch.rand(2, 1, depth, 32, 32)
    unmasked = _coarse_unmasked(2, 2)
    y = projection(x, unmasked)
    assert y.shape == (2, 16, 8, 8)
    torch.testing.assert_close(y, projection(x, upsample_mask(unmasked, (8, 8))))
    visible = upsample_mask(unmasked, (8, 8))
    assert torch.equal(y * ~visible, torch.zeros_like(y))
    torch.testing.assert_close(y * visible, projection(x) * visible)


@pytest.mark.parametrize(
    ("shape", "kwargs", "expected"),
    [
        ((2, 1, 5, 64, 64), {}, (2, 96, 16, 16)),
        ((2, 1, 1, 64, 64), {}, (2, 96, 16, 16)),
        ((2, 2, 10, 64, 32), {"kernel_depth": 5, "in_stack_depth": 10}, (2, 96, 16, 8)),
    ],
)
def test_projection_shapes_for_3d_2d_and_anisotropic_inputs(shape, kwargs, expected):
    projection = MaskedAdaptiveProjection(shape[1], 96, **kwargs)
    assert projection(torch.rand(shape)).shape == expected


def test_projection_rejects_indivisible_depth():
    with pytest.raises(ValueError, match="in_stack_depth=7 is not divisible by kernel_depth=5"):
        MaskedAdaptiveProjection(1, 96, in_stack_depth=7)


def test_encoder_feature_strides_and_mask():
    encoder = MaskedMultiscaleEncoder(1, stage_blocks=(1, 1, 1, 1), dims=(8, 16, 32, 64))
    assert encoder.total_stride == 32
    features, mask = encoder(torch.rand(2, 1, 5, 64, 64), mask_ratio=0.5)
    assert [tuple(f.shape) for f in features] == [(2, 8, 16, 16), (2, 16, 8, 8), (2, 32, 4, 4), (2, 64, 2, 2)]
    assert mask.shape == (2, 1, 2, 2)
    visible = ~upsample_mask(mask, (16, 16))
    assert torch.equal(features[0] * ~visible, torch.zeros_like(features[0]))


def test_fcmae_defaults():
    with torch.device("meta"):
        model = FullyConvolutionalMAE(1, 1)
    assert model.num_blocks == 8
    assert model.out_stack_depth == 5
    assert model.pretraining


@pytest.mark.parametrize("depth", [5, 1])
def test_fcmae_pretraining_returns_prediction_and_mask(depth):
    model = FullyConvolutionalMAE(3, 3, **SMALL)
    x = torch.rand(2, 3, depth, 64, 64)
    y, mask = model(x)
    assert y.shape == (2, 3, 5, 64, 64)
    assert mask is None
    y, mask = model(x, mask_ratio=0.5)
    assert y.shape == (2, 3, 5, 64, 64)
    assert mask.shape == (2, 1, 64, 64)
    assert mask.float().mean().item() == pytest.approx(0.5)


def test_fcmae_fine_tuning_returns_prediction_only():
    model = FullyConvolutionalMAE(1, 2, pretraining=False, in_stack_depth=1, stem_kernel_size=(1, 4, 4), **SMALL)
    assert model(torch.rand(1, 1, 1, 64, 64)).shape == (1, 2, 1, 64, 64)


def test_fcmae_head_conv():
    model = FullyConvolutionalMAE(2, 1, head_conv=True, **SMALL)
    assert model.head.conv[0].conv.in_channels == 2 * 4
    y, _ = model(torch.rand(1, 2, 5, 64, 64))
    assert y.shape == (1, 1, 5, 64, 64)


def test_fcmae_mask_is_reproducible_with_a_generator():
    model = FullyConvolutionalMAE(1, 1, **SMALL).eval()
    x = torch.rand(1, 1, 5, 128, 128)
    y1, m1 = model(x, mask_ratio=0.5, generator=torch.Generator().manual_seed(0))
    y2, m2 = model(x, mask_ratio=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m1, m2)
    assert torch.equal(y1, y2)


def test_fcmae_gradients_reach_every_parameter(params_without_grad):
    model = FullyConvolutionalMAE(1, 1, head_conv=True, **SMALL)
    # The stem has a 3D conv for stacks and a 2D conv for single slices: one pass of each reaches both.
    for depth in (5, 1):
        y, _ = model(torch.rand(2, 1, depth, 64, 64), mask_ratio=0.25)
        y.square().mean().backward()
    assert params_without_grad(model) == []


def test_fcmae_eval_is_deterministic():
    model = FullyConvolutionalMAE(1, 1, **SMALL).eval()
    x = torch.rand(1, 1, 5, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x)[0], model(x)[0])


def _weighted_sum(tensor: torch.Tensor) -> float:
    """A checksum that also changes when values move: each element weighted by its position."""
    flat = tensor.detach().double().flatten()
    return (flat * torch.linspace(1, 2, flat.numel(), dtype=torch.float64)).sum().item()


def test_fcmae_seeded_keys_weights_and_outputs_are_pinned():
    """A seeded small FCMAE keeps its state_dict table, its initial weights and its outputs across refactors."""
    torch.manual_seed(0)
    model = FullyConvolutionalMAE(1, 1, **SMALL).eval()
    state_dict = model.state_dict()
    table = "\n".join(f"{key}:{tuple(value.shape)}" for key, value in state_dict.items())
    assert len(state_dict) == 96
    expected_table_sha256 = "cf9b18fbd02092c518bdb56ac66ca313bf617b0015f4a9d184b9c5dcdd3288ae"
    assert hashlib.sha256(table.encode()).hexdigest() == expected_table_sha256
    # The draws are the same on every CPU but the float math of the initializers (kaiming uniform_ scaling,
    # trunc_normal_'s erfinv) is vectorized per ATEN_CPU_CAPABILITY: measured checksum drift 1.1e-7 relative
    # (ATEN_CPU_CAPABILITY=default vs avx2/avx512; elements differ by <= 1.7e-7 in 5 of 96 tensors). rel=1e-6 is 9x
    # that; re-seeding moves the checksum by 1.2e-2, shuffling any one tensor by >= 3e-6, scaling a median one by
    # 1.01 by 3.5e-5.
    assert sum(_weighted_sum(value) for value in state_dict.values()) == pytest.approx(1038.9632821176342, rel=1e-6)
    x = torch.rand(2, 1, 5, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y, _ = model(x)
        y_masked, mask = model(x, mask_ratio=0.5, generator=torch.Generator().manual_seed(2))
    # Output sums over 40960 values, across ATEN_CPU_CAPABILITY default/avx2/avx512 x 1/2 threads x oneDNN on/off,
    # ONEDNN_MAX_CPU_ISA and MKL_ENABLE_INSTRUCTIONS (weights and kernels both vary): max relative drift of the sums
    # 1.5e-6 (the signed sums cancel ~8x, so drift more than the absolute sums, <= 4.3e-8); float64 lands within
    # 1.1e-7 of the pinned values. rel=1e-5 is 6.7x the largest drift.
    assert y.double().sum().item() == pytest.approx(-222.41608784237178, rel=1e-5)
    assert y.double().abs().sum().item() == pytest.approx(1893.1606818802538, rel=1e-5)
    assert mask.sum().item() == 4096
    assert y_masked.double().sum().item() == pytest.approx(-277.1082680320833, rel=1e-5)
    assert y_masked.double().abs().sum().item() == pytest.approx(1940.642483299016, rel=1e-5)
