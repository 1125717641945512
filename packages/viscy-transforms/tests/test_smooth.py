import pytest
import torch
from monai.transforms import GaussianSmooth

from viscy_transforms import BatchedRandGaussianSmooth, BatchedRandGaussianSmoothd


def _impulse(size=15):
    data = torch.zeros(1, 1, size, size, size)
    data[..., size // 2, size // 2, size // 2] = 1.0
    return data


@pytest.mark.parametrize(("argument", "axis"), [("sigma_x", 4), ("sigma_y", 3), ("sigma_z", 2)])
def test_each_sigma_blurs_its_own_axis(argument, axis):
    """sigma_x blurs X (the last axis) and sigma_z blurs Z (depth), as the names say for ZYX data."""
    sigmas = {"sigma_x": 0.0, "sigma_y": 0.0, "sigma_z": 0.0, argument: 1.5}
    out = BatchedRandGaussianSmooth(**sigmas, prob=1.0)(_impulse())
    spread = (out[0, 0] > 1e-6).nonzero()
    varying = [dim for dim in range(3) if spread[:, dim].unique().numel() > 1]
    assert varying == [axis - 2]
    torch.testing.assert_close(out.sum(), torch.tensor(1.0))


def test_anisotropic_sigmas_match_monai_in_zyx_order(make_batch):
    data = make_batch(2, 2, 9, 11, 13)
    out = BatchedRandGaussianSmooth(sigma_x=2.0, sigma_y=1.0, sigma_z=0.5, prob=1.0)(data)
    reference = GaussianSmooth(sigma=(0.5, 1.0, 2.0))
    for sample, smoothed in zip(data, out, strict=True):
        torch.testing.assert_close(smoothed, reference(sample).as_tensor(), atol=2e-4, rtol=1e-3)


def test_larger_sigma_blurs_more(make_batch):
    data = make_batch(1, 1, 8, 16, 16)
    stds = [float(BatchedRandGaussianSmooth(sigma, sigma, sigma, prob=1.0)(data).std()) for sigma in (0.5, 1.0, 2.0)]
    assert stds[0] > stds[1] > stds[2]


def test_zero_sigmas_leave_data_unchanged(make_batch):
    data = make_batch(2, 1, 4, 5, 6)
    assert torch.equal(BatchedRandGaussianSmooth(0.0, 0.0, 0.0, prob=1.0)(data), data)


def test_sigmas_are_drawn_per_sample(make_batch):
    data = _impulse().expand(16, -1, -1, -1, -1)
    out = BatchedRandGaussianSmooth(sigma_x=(0.5, 2.5), sigma_y=0.0, sigma_z=0.0, prob=1.0)(data)
    peaks = out.flatten(1).amax(dim=1)
    assert peaks.unique().numel() == 16


@pytest.mark.parametrize("border_type", ["reflect", "replicate", "circular"])
def test_other_border_types_keep_a_constant_volume_constant(border_type):
    data = torch.full((1, 1, 6, 6, 6), 2.0)
    out = BatchedRandGaussianSmooth(1.0, 1.0, 1.0, prob=1.0, border_type=border_type, truncated=2.0)(data)
    torch.testing.assert_close(out, data)


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="border_type"):
        BatchedRandGaussianSmooth(border_type="mirror")
    with pytest.raises(ValueError, match="sigma_y"):
        BatchedRandGaussianSmooth(sigma_y=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="sigma_z"):
        BatchedRandGaussianSmooth(sigma_z=-1.0)
    with pytest.raises(ValueError, match="truncated"):
        BatchedRandGaussianSmooth(truncated=0.0)


def test_only_5d_batches():
    with pytest.raises(ValueError, match=r"\(B, C, Z, Y, X\)"):
        BatchedRandGaussianSmooth(prob=1.0)(torch.zeros(1, 1, 4, 4))


def test_dict_version_blurs_every_key_alike(make_batch):
    data = make_batch(8, 1, 4, 6, 6)
    out = BatchedRandGaussianSmoothd(keys=["a", "b"], prob=0.5)({"a": data, "b": data.clone()})
    assert torch.equal(out["a"], out["b"])
