import pytest
import torch

from viscy_models import Unet2d, Unet25d


def _unused_resid_convs(model) -> set[str]:
    """resid_conv parameters that the forward pass never uses (kept for checkpoint compatibility)."""
    unused = set()
    for name, block in model.named_children():
        if hasattr(block, "resid_conv") and not (block.residual and block.in_filters > block.out_filters):
            unused |= {f"{name}.resid_conv.weight", f"{name}.resid_conv.bias"}
    return unused


@pytest.mark.parametrize(("num_blocks", "size"), [(1, 16), (2, 16), (4, 32)])
def test_unet2d_shapes(num_blocks, size):
    model = Unet2d(num_blocks=num_blocks).eval()
    assert model(torch.rand(2, 1, 1, size, size)).shape == (2, 1, 1, size, size)


def test_unet2d_default_filters_and_up_block_channels():
    model = Unet2d()
    assert model.down_conv_block_0.Conv2d_0.weight.shape == (16, 1, 3, 3)
    assert model.bottom_transition_block.Conv2d_0.weight.shape == (256, 128, 3, 3)
    assert model.up_conv_block_0.Conv2d_0.weight.shape == (128, 384, 3, 3)
    assert model.terminal_block.Conv2d_0.weight.shape == (1, 16, 3, 3)


def test_unet2d_multichannel_custom_filters_and_residual():
    model = Unet2d(in_channels=2, out_channels=3, num_blocks=2, num_filters=(8, 12, 24), residual=True).eval()
    assert model(torch.rand(2, 2, 1, 16, 16)).shape == (2, 3, 1, 16, 16)
    assert model.up_conv_block_0.Conv2d_0.in_channels == 36


def test_unet2d_seg_output_is_non_negative_and_reg_is_linear():
    x = torch.randn(2, 1, 1, 16, 16)
    seg = Unet2d(num_blocks=2, task="seg").eval()
    assert seg(x).min() >= 0
    reg = Unet2d(num_blocks=2, task="reg").eval()
    assert reg(x).min() < 0 or reg(-x).min() < 0


def test_unet2d_dropout_applies_in_training():
    """Regression: the reference's dropout 0.2 became p=0 and was never registered."""
    model = Unet2d(num_blocks=1, dropout=0.2)
    assert model.down_conv_block_0.dropout_0.p == 0.2
    assert model.up_conv_block_0.dropout_1.p == 0.2
    assert not any("dropout" in key for key in model.state_dict())
    x = torch.rand(2, 1, 1, 16, 16)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_unet2d_has_no_pool_or_skip_keys():
    prefixes = {key.split(".")[0] for key in Unet2d().state_dict()}
    assert prefixes == {
        *(f"down_conv_block_{i}" for i in range(4)),
        "bottom_transition_block",
        *(f"up_conv_block_{i}" for i in range(4)),
        "terminal_block",
    }


@pytest.mark.parametrize("residual", [False, True])
def test_unet2d_gradients_reach_every_used_parameter(residual, params_without_grad):
    model = Unet2d(num_blocks=2, residual=residual)
    model(torch.rand(2, 1, 1, 16, 16)).square().mean().backward()
    assert set(params_without_grad(model)) == _unused_resid_convs(model)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "cls"}, "Unknown task 'cls'; choose one of \\('seg', 'reg'\\)"),
        ({"num_filters": (8, 16)}, "num_filters needs num_blocks \\+ 1 = 5 entries"),
        ({"kernel_size": (2, 2)}, "odd integers"),
    ],
)
def test_unet2d_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Unet2d(**kwargs)


def test_unet2d_rejects_bad_input_shape():
    with pytest.raises(ValueError, match="divisible by 16"):
        Unet2d()(torch.rand(1, 1, 1, 24, 24))
    with pytest.raises(ValueError, match=r"expects \(B, C, 1, H, W\)"):
        Unet2d()(torch.rand(1, 1, 3, 32, 32))


@pytest.mark.parametrize(("out_depth", "num_blocks"), [(1, 4), (5, 1), (3, 2)])
def test_unet25d_shapes(out_depth, num_blocks):
    model = Unet25d(out_stack_depth=out_depth, num_blocks=num_blocks).eval()
    assert model(torch.rand(2, 1, 5, 16, 16)).shape == (2, 1, out_depth, 16, 16)


def test_unet25d_z_compression_kernels():
    model = Unet25d()
    assert model.bottom_transition_block.weight.shape == (256, 128, 5, 1, 1)
    assert model.skip_conv_layer_3.weight.shape == (128, 128, 5, 1, 1)
    assert model.down_conv_block_0.Conv3d_0.weight.shape == (16, 1, 3, 3, 3)
    assert model.up_conv_block_0.Conv3d_0.weight.shape == (128, 384, 1, 3, 3)
    assert model.terminal_block.Conv3d_0.weight.shape == (1, 16, 1, 3, 3)


def test_unet25d_multichannel_residual_reg():
    model = Unet25d(in_channels=2, out_channels=3, residual=True, task="reg", num_blocks=2).eval()
    assert model(torch.rand(2, 2, 5, 16, 16)).shape == (2, 3, 1, 16, 16)
    assert "terminal_block.batch_norm_0.weight" not in model.state_dict()


def test_unet25d_custom_filters():
    model = Unet25d(num_blocks=2, num_filters=(4, 8, 12)).eval()
    assert model(torch.rand(1, 1, 5, 8, 8)).shape == (1, 1, 1, 8, 8)


@pytest.mark.parametrize("residual", [False, True])
def test_unet25d_gradients_reach_every_used_parameter(residual, params_without_grad):
    model = Unet25d(num_blocks=2, residual=residual, out_stack_depth=3)
    model(torch.rand(2, 1, 5, 16, 16)).square().mean().backward()
    assert set(params_without_grad(model)) == _unused_resid_convs(model)


def test_unet25d_eval_is_deterministic_and_dropout_trains():
    model = Unet25d(num_blocks=1)
    x = torch.rand(2, 1, 5, 8, 8)
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dropout": 0.6}, "dropout must be in \\[0, 0.5\\], got 0.6"),
        ({"out_stack_depth": 6}, "out_stack_depth=6 must be between 1 and in_stack_depth=5"),
        ({"task": "x"}, "Unknown task 'x'"),
    ],
)
def test_unet25d_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Unet25d(**kwargs)


def test_unet25d_rejects_wrong_depth():
    with pytest.raises(ValueError, match=r"expects \(B, C, 5, H, W\)"):
        Unet25d(num_blocks=1)(torch.rand(1, 1, 4, 8, 8))
