import numpy as np
import pytest
import torch

from viscy_data.channel_dropout import ChannelDropout


def batch(b=8, c=3, shape=(2, 4, 4), seed=0):
    return torch.rand(b, c, *shape, generator=torch.Generator().manual_seed(seed)) + 0.5  # no zeros of its own


def dropped(x, out):
    """(B, C) booleans: which channel of which sample came out zeroed."""
    return (out == 0).flatten(2).all(-1) & ~(x == 0).flatten(2).all(-1)


def test_p_zero_is_identity():
    x = batch()
    assert ChannelDropout([0, 1], p=0.0)(x) is x


def test_p_one_zeros_exactly_the_listed_channels():
    x = batch(c=4)
    out = ChannelDropout([1, 3], p=1.0, seed=0)(x)
    assert (out[:, [1, 3]] == 0).all()
    assert torch.equal(out[:, [0, 2]], x[:, [0, 2]])
    assert out.dtype == x.dtype
    assert out.shape == x.shape


def test_fraction_close_to_p_and_other_channels_untouched():
    x = batch(b=4000, c=3, shape=(1, 2, 2))
    out = ChannelDropout([0, 2], p=0.3, seed=1)(x)
    mask = dropped(x, out)
    assert abs(mask[:, 0].float().mean().item() - 0.3) < 0.03
    assert abs(mask[:, 2].float().mean().item() - 0.3) < 0.03
    assert not mask[:, 1].any()
    kept = ~mask[:, :, None, None, None].expand_as(x)
    assert torch.equal(out[kept], x[kept])


def test_per_sample_and_per_channel_independence():
    x = batch(b=20000, c=2, shape=(1, 1, 1))
    mask = dropped(x, ChannelDropout([0, 1], p=0.5, seed=2)(x)).float().numpy()
    assert abs(np.corrcoef(mask[:, 0], mask[:, 1])[0, 1]) < 0.03  # channels independent
    assert abs(np.corrcoef(mask[:-1, 0], mask[1:, 0])[0, 1]) < 0.03  # neighbouring samples independent
    both = (mask[:, 0] * mask[:, 1]).mean()
    assert abs(both - 0.25) < 0.02


def test_eval_mode_is_identity():
    x = batch()
    module = ChannelDropout([0], p=1.0).eval()
    assert module(x) is x
    assert module.train()(x) is not x


def test_input_never_modified():
    x = batch()
    copy = x.clone()
    out = ChannelDropout([0, 1, 2], p=0.7, seed=3)(x)
    assert torch.equal(x, copy)
    assert out.data_ptr() != x.data_ptr()


def test_same_seed_same_masks_and_reseeding():
    x = batch(b=64)
    first = ChannelDropout([0, 1], p=0.5, seed=4)(x)
    assert torch.equal(first, ChannelDropout([0, 1], p=0.5, seed=4)(x))
    assert not torch.equal(first, ChannelDropout([0, 1], p=0.5, seed=5)(x))
    module = ChannelDropout([0, 1], p=0.5, seed=9)
    assert module.set_random_state(seed=4) is module
    assert torch.equal(module(x), first)
    module.set_random_state(state=np.random.RandomState(0))
    other = ChannelDropout([0, 1], p=0.5).set_random_state(state=np.random.RandomState(0))
    assert torch.equal(module(x), other(x))
    with pytest.raises(TypeError, match="RandomState"):
        module.set_random_state(state=0)


def test_default_seed_follows_torch_global_seed():
    x = batch(b=64)
    torch.manual_seed(11)
    first = ChannelDropout([0, 1], p=0.5)(x)
    torch.manual_seed(11)
    assert torch.equal(ChannelDropout([0, 1], p=0.5)(x), first)


def test_successive_calls_draw_new_masks():
    x = batch(b=64)
    module = ChannelDropout([0, 1], p=0.5, seed=0)
    assert not torch.equal(module(x), module(x))


def test_gradients_flow_through_kept_channels():
    x = batch(b=16).requires_grad_()
    out = ChannelDropout([0], p=0.5, seed=6)(x)
    out.sum().backward()
    mask = dropped(x.detach(), out.detach())
    expected = (~mask).float()[:, :, None, None, None].expand_as(x)
    assert torch.equal(x.grad, expected)


def test_keeps_dtype_and_device():
    x = batch().to(torch.float16)
    out = ChannelDropout([0], p=1.0)(x)
    assert out.dtype == torch.float16
    assert out.device == x.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_same_masks_on_cuda_as_on_cpu():
    x = batch(b=32)
    cpu = ChannelDropout([0, 2], p=0.5, seed=7)(x)
    cuda = ChannelDropout([0, 2], p=0.5, seed=7)(x.cuda())
    assert cuda.is_cuda
    assert torch.equal(cuda.cpu(), cpu)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": [-1]}, "non-negative integer indices, got \\[-1\\]"),
        ({"channels": [0.5]}, "non-negative integer"),
        ({"channels": [1, 1]}, "distinct"),
        ({"channels": [0], "p": 1.5}, "p must be a probability in \\[0, 1\\], got 1.5"),
        ({"channels": [0], "p": -0.1}, "p must be a probability"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ChannelDropout(**kwargs)


def test_bad_input_names_the_expected_shape():
    module = ChannelDropout([3], p=0.5)
    with pytest.raises(ValueError, match="expects a \\(B, C, Z, Y, X\\) tensor, got shape \\(2, 3, 4, 4\\)"):
        module(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"drops channels \[3\], but the batch of shape .* has C=3 channels"):
        module(torch.zeros(2, 3, 1, 4, 4))
    with pytest.raises(ValueError, match="has C=3"):
        module.eval()(torch.zeros(2, 3, 1, 4, 4))  # checked in eval mode too


def test_importable_from_the_package():
    import viscy_data

    assert viscy_data.ChannelDropout is ChannelDropout
    assert "ChannelDropout" in viscy_data.__all__
