import pytest
import torch
from monai.transforms import ScaleIntensity

from viscy_transforms import BatchedRandScaleIntensity, BatchedRandScaleIntensityd


def test_fixed_factor_golden(device):
    data = torch.tensor([1.0, 2.0, -4.0], device=device).reshape(1, 1, 3)
    out = BatchedRandScaleIntensity(factors=(0.5, 0.5), prob=1.0)(data)
    assert out.flatten().tolist() == [1.5, 3.0, -6.0]


def test_matches_monai_scale_intensity_with_the_same_factor(make_batch):
    data = make_batch(3, 2, 2, 4, 4)
    out = BatchedRandScaleIntensity(factors=(-0.3, -0.3), prob=1.0)(data)
    for sample, scaled in zip(data, out, strict=True):
        torch.testing.assert_close(scaled, ScaleIntensity(minv=None, maxv=None, factor=-0.3)(sample).as_tensor())


@pytest.mark.parametrize("channel_wise", [False, True])
def test_factors_per_sample_or_per_channel_within_the_range(make_batch, channel_wise):
    data = make_batch(32, 3, 2, 4, 4) + 1
    out = BatchedRandScaleIntensity(factors=(0.2, 0.6), prob=1.0, channel_wise=channel_wise)(data)
    ratios = (out / data).flatten(2)
    assert torch.allclose(ratios, ratios[..., :1].expand_as(ratios))
    per_channel = ratios[..., 0]
    assert bool(((per_channel >= 1.2 - 1e-6) & (per_channel <= 1.6 + 1e-6)).all())
    channels_differ = bool((per_channel.std(dim=1) > 1e-3).all())
    assert channels_differ == channel_wise
    assert per_channel[:, 0].std() > 0.05


def test_scalar_factor_is_symmetric():
    assert BatchedRandScaleIntensity(factors=0.3).factors == (-0.3, 0.3)
    assert BatchedRandScaleIntensity(factors=-0.3).factors == (-0.3, 0.3)


@pytest.mark.parametrize("factors", [(0.1,), (0.1, 0.2, 0.3), "0.1"])
def test_invalid_factors_are_rejected(factors):
    with pytest.raises(ValueError, match="factors"):
        BatchedRandScaleIntensity(factors=factors)


def test_zero_factor_leaves_data_unchanged(make_batch):
    data = make_batch(4, 1, 2, 3, 3)
    assert torch.equal(BatchedRandScaleIntensity(factors=0.0, prob=1.0)(data), data)


def test_dict_channel_wise_needs_equal_channel_counts(make_batch):
    sample = {"source": make_batch(2, 1, 2, 3, 3), "target": make_batch(2, 2, 2, 3, 3)}
    with pytest.raises(ValueError, match="channel counts"):
        BatchedRandScaleIntensityd(keys=["source", "target"], prob=1.0, channel_wise=True)(sample)
    out = BatchedRandScaleIntensityd(keys=["source", "target"], factors=(0.5, 0.5), prob=1.0)(sample)
    assert torch.allclose(out["target"], sample["target"] * 1.5)
