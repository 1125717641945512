import pytest
import torch
from torch import nn

from viscy_models.components import ConvBlock2D, ConvBlock3D


def test_conv_block_2d_module_names_are_checkpoint_keys():
    block = ConvBlock2D(4, 8, num_repeats=2)
    assert list(block.state_dict())[:5] == [
        "batch_norm_0.weight",
        "batch_norm_0.bias",
        "batch_norm_0.running_mean",
        "batch_norm_0.running_var",
        "batch_norm_0.num_batches_tracked",
    ]
    assert {"Conv2d_0.weight", "Conv2d_1.bias", "resid_conv.weight"} <= set(block.state_dict())
    assert isinstance(block.relu_act_1, nn.ReLU)


def test_instance_norm_is_registered_by_name_without_keys():
    block = ConvBlock2D(4, 8, norm="instance", num_repeats=1)
    assert isinstance(block.instance_norm_0, nn.InstanceNorm2d)
    assert not any(key.startswith("instance_norm") for key in block.state_dict())


@pytest.mark.parametrize("residual", [True, False])
def test_resid_conv_is_always_in_the_state_dict(residual):
    """Kept for strict loading of reference checkpoints, even where it is never used."""
    block = ConvBlock2D(4, 8, residual=residual, num_repeats=1)
    assert block.state_dict()["resid_conv.weight"].shape == (8, 4, 1, 1)


def _identity_block(cls, in_filters, out_filters, **kwargs):
    """A block whose layers output zeros, so its output is exactly its residual shortcut."""
    block = cls(in_filters, out_filters, norm="none", activation="linear", num_repeats=1, **kwargs)
    conv = block.Conv2d_0 if cls is ConvBlock2D else block.Conv3d_0
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return block.eval()


def test_residual_prepends_zero_channels_when_channels_grow():
    block = _identity_block(ConvBlock2D, 2, 5)
    x = torch.rand(1, 2, 4, 4)
    y = block(x)
    assert torch.equal(y[:, :3], torch.zeros(1, 3, 4, 4))
    assert torch.equal(y[:, 3:], x)


def test_residual_uses_resid_conv_when_channels_shrink():
    block = _identity_block(ConvBlock2D, 6, 3)
    x = torch.rand(1, 6, 4, 4)
    torch.testing.assert_close(block(x), block.resid_conv(x))


def test_residual_is_identity_for_equal_channels():
    block = _identity_block(ConvBlock3D, 3, 3)
    x = torch.rand(1, 3, 3, 4, 4)
    assert torch.equal(block(x), x)


def test_filter_steps_linear_and_last():
    linear = ConvBlock2D(4, 16, num_repeats=3, filter_steps="linear")
    assert [getattr(linear, f"Conv2d_{i}").out_channels for i in range(3)] == [8, 12, 16]
    last = ConvBlock2D(4, 16, num_repeats=3, filter_steps="last")
    assert [getattr(last, f"Conv2d_{i}").out_channels for i in range(3)] == [4, 4, 16]
    assert linear(torch.rand(2, 4, 8, 8)).shape == (2, 16, 8, 8)


def test_norm_before_conv_uses_conv_input_channels():
    block = ConvBlock2D(4, 12, num_repeats=3, filter_steps="linear", layer_order="nca")
    assert [getattr(block, f"batch_norm_{i}").num_features for i in range(3)] == [4, 6, 9]
    assert block(torch.rand(2, 4, 8, 8)).shape == (2, 12, 8, 8)


def test_linear_activation_with_several_repeats():
    block = ConvBlock2D(4, 4, num_repeats=3, activation="linear")
    assert block(torch.rand(2, 4, 8, 8)).shape == (2, 4, 8, 8)


@pytest.mark.parametrize("transpose", [False, True])
def test_transposed_convolutions_keep_the_size(transpose):
    block = ConvBlock2D(4, 8, transpose=transpose, kernel_size=5, num_repeats=2)
    assert block(torch.rand(2, 4, 9, 9)).shape == (2, 8, 9, 9)


def test_dropout_is_registered_and_applied_in_training():
    """Regression: the reference built Dropout2d(int(dropout)), i.e. p=0, and never registered it."""
    block = ConvBlock2D(4, 32, dropout=0.5, norm="none", residual=False, num_repeats=1)
    assert isinstance(block.dropout_0, nn.Dropout2d)
    assert block.dropout_0.p == 0.5
    assert not any("dropout" in key for key in block.state_dict())
    x = torch.rand(4, 4, 8, 8)
    block.train()
    channel_max = block(x).amax(dim=(2, 3))
    dropped = (channel_max == 0).float().mean()
    assert 0.2 < dropped < 0.8
    block.eval()
    assert torch.equal(block(x), block(x))


def test_no_dropout_modules_without_dropout():
    block = ConvBlock3D(4, 8)
    assert not any(name.startswith("dropout") for name, _ in block.named_children())


def test_conv_block_3d_dropout_module():
    block = ConvBlock3D(4, 8, dropout=0.2)
    assert isinstance(block.dropout_0, nn.Dropout3d)


def test_conv_block_3d_same_padding_and_cna_order():
    block = ConvBlock3D(4, 8, layer_order="cna", kernel_size=(3, 5, 5))
    assert next(iter(block.state_dict())) == "batch_norm_0.weight"
    assert block.Conv3d_0.weight.shape == (8, 4, 3, 5, 5)
    assert block(torch.rand(2, 4, 5, 8, 8)).shape == (2, 8, 5, 8, 8)


def test_conv_block_3d_valid_stack_shrinks_depth_only():
    """Regression: the reference compared self.padding, so "valid_stack" never took effect."""
    block = ConvBlock3D(4, 8, kernel_size=(3, 3, 3), num_repeats=2, padding="valid_stack", residual=True)
    assert block.Conv3d_0.padding == (0, 1, 1)
    y = block(torch.rand(2, 4, 7, 8, 8))
    assert y.shape == (2, 8, 3, 8, 8)


def test_conv_block_3d_valid_stack_residual_is_centre_cropped():
    block = _identity_block(ConvBlock3D, 2, 2, kernel_size=(3, 1, 1), padding="valid_stack")
    x = torch.rand(1, 2, 5, 2, 2)
    assert torch.equal(block(x), x[:, :, 1:4])


def test_conv_block_3d_explicit_padding():
    block = ConvBlock3D(2, 2, kernel_size=(3, 3, 3), num_repeats=1, padding=(0, 0, 0))
    assert block(torch.rand(1, 2, 5, 6, 6)).shape == (1, 2, 3, 4, 4)


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (ConvBlock2D, {"kernel_size": 4}, "kernel_size must be 2 odd integers, got \\(4, 4\\)"),
        (ConvBlock3D, {"kernel_size": (3, 2, 3)}, "kernel_size must be 3 odd integers"),
        (ConvBlock2D, {"norm": "layer"}, "Unknown norm 'layer'; choose one of \\('batch', 'instance', 'none'\\)"),
        (ConvBlock2D, {"activation": "tanh"}, "Unknown activation 'tanh'; choose one of"),
        (ConvBlock2D, {"filter_steps": "middle"}, "Unknown filter_steps 'middle'"),
        (ConvBlock2D, {"layer_order": "cnn"}, "permutation of 'can'"),
        (ConvBlock2D, {"dropout": 1.0}, "dropout must be a probability in \\[0, 1\\), got 1.0"),
        (ConvBlock2D, {"dropout": True}, "dropout must be a probability"),
        (ConvBlock3D, {"padding": "valid"}, "Unknown padding 'valid'; choose one of \\('same', 'valid_stack'\\)"),
        (ConvBlock3D, {"padding": (1, 1)}, "padding must be 3 non-negative integers"),
        (ConvBlock2D, {"num_repeats": 0}, "num_repeats must be at least 1"),
    ],
)
def test_invalid_arguments_raise_value_error(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(4, 8, **kwargs)
