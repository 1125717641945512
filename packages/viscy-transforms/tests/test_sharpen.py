import pytest
import torch

from viscy_transforms import BatchedRandSharpend


def _sharpen(data, alpha=0.5):
    transform = BatchedRandSharpend(keys="x", alpha_range=(alpha, alpha), prob=1.0)
    return transform({"x": data})["x"]


def test_impulse_response_golden():
    data = torch.zeros(1, 1, 5, 5, 5)
    data[..., 2, 2, 2] = 1.0
    out = _sharpen(data, alpha=0.5)[0, 0]
    assert float(out[2, 2, 2]) == pytest.approx(4.0)  # (1 - a) + 7 a
    for z, y, x in [(1, 2, 2), (3, 2, 2), (2, 1, 2), (2, 3, 2), (2, 2, 1), (2, 2, 3)]:
        assert float(out[z, y, x]) == pytest.approx(-0.5)
    assert float(out.abs().sum()) == pytest.approx(7.0)


def test_constant_interior_is_unchanged():
    out = _sharpen(torch.full((1, 1, 5, 5, 5), 3.0))
    torch.testing.assert_close(out[..., 1:-1, 1:-1, 1:-1], torch.full((1, 1, 3, 3, 3), 3.0))


def test_works_for_several_channels_each_on_its_own(make_batch, device):
    """The reference's grouped convolution raised RuntimeError for C > 1."""
    data = make_batch(2, 3, 4, 5, 5, device=device)
    out = _sharpen(data)
    assert out.shape == data.shape
    for channel in range(3):
        torch.testing.assert_close(out[:, channel : channel + 1], _sharpen(data[:, channel : channel + 1]))


def test_channel_count_can_change_between_calls(make_batch):
    transform = BatchedRandSharpend(keys="x", prob=1.0)
    for channels in (1, 3, 2):
        assert transform({"x": make_batch(2, channels, 3, 3, 3)})["x"].shape[1] == channels


def test_only_5d_batches():
    with pytest.raises(ValueError, match=r"\(B, C, Z, Y, X\)"):
        _sharpen(torch.zeros(1, 1, 4, 4))


def test_invalid_alpha_range_is_rejected():
    with pytest.raises(ValueError, match="alpha_range"):
        BatchedRandSharpend(keys="x", alpha_range=(0.1, 0.2, 0.3))
