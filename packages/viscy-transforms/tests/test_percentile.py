import warnings

import numpy as np
import pytest
import torch
from monai.transforms import ScaleIntensityRangePercentiles

from viscy_transforms import BatchedScaleIntensityRangePercentiles, BatchedScaleIntensityRangePercentilesd
from viscy_transforms._percentile import batched_quantile

CONFIGS = [
    {"lower": 1, "upper": 99, "b_min": 0.0, "b_max": 1.0},
    {"lower": 5, "upper": 95, "b_min": -1.0, "b_max": 1.0, "clip": True},
    {"lower": 10, "upper": 90, "b_min": 0.0, "b_max": 1.0, "relative": True},
    {"lower": 50, "upper": 99, "b_min": 0.0, "b_max": 1.0, "channel_wise": True},
    {"lower": 25, "upper": 75, "b_min": None, "b_max": None},
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("shape", [(3, 2, 4, 6, 6), (3, 2, 6, 6)])
def test_matches_monai_per_sample_for_4d_and_5d(make_batch, device, config, shape):
    """The reference broadcast 4D input into a wrong 5D output."""
    data = make_batch(*shape, device=device) * 10 - 3
    out = BatchedScaleIntensityRangePercentiles(**config)(data)
    assert out.shape == data.shape
    reference = ScaleIntensityRangePercentiles(**config)
    for sample, scaled in zip(data, out, strict=True):
        torch.testing.assert_close(scaled, reference(sample).as_tensor().to(scaled), atol=1e-5, rtol=1e-5)


def test_percentiles_map_to_the_target_range():
    data = torch.arange(101.0).reshape(1, 1, 101) * torch.tensor([1.0, 3.0]).reshape(2, 1, 1)
    out = BatchedScaleIntensityRangePercentiles(lower=50, upper=99, b_min=0.0, b_max=1.0)(data)
    assert out[:, 0, 50].tolist() == [0.0, 0.0]
    torch.testing.assert_close(out[:, 0, 99], torch.ones(2))


def test_a_constant_sample_is_shifted_and_the_others_are_scaled():
    """The reference shifted the whole batch when any one sample was constant."""
    data = torch.stack([torch.arange(11.0), torch.full((11,), 4.0)]).reshape(2, 1, 11)
    with pytest.warns(UserWarning, match="1 of 2 samples"):
        out = BatchedScaleIntensityRangePercentiles(lower=0, upper=100, b_min=-1.0, b_max=1.0)(data)
    torch.testing.assert_close(out[0, 0], torch.linspace(-1.0, 1.0, 11))
    assert out[1].flatten().tolist() == [-1.0] * 11


def test_no_warning_when_every_sample_can_be_scaled(make_batch):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BatchedScaleIntensityRangePercentiles(lower=1, upper=99, b_min=0, b_max=1)(make_batch(2, 1, 8))


@pytest.mark.parametrize("q", [0.0, 0.013, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("length", [1, 2, 7, 100])
def test_batched_quantile_equals_torch_quantile(make_batch, q, length):
    values = make_batch(3, 2, length)
    torch.testing.assert_close(batched_quantile(values, q), torch.quantile(values, q, dim=-1))


def test_integer_input_becomes_float32():
    data = torch.arange(20, dtype=torch.int32).reshape(2, 1, 10)
    out = BatchedScaleIntensityRangePercentiles(lower=0, upper=100, b_min=0.0, b_max=1.0)(data)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out[1, 0], torch.linspace(0, 1, 10))


def test_float64_is_kept(make_batch):
    data = make_batch(2, 1, 10, dtype=torch.float64)
    assert BatchedScaleIntensityRangePercentiles(1, 99, 0.0, 1.0)(data).dtype == torch.float64


def test_reference_dtype_is_accepted_silently_and_another_refused(make_batch, recwarn):
    data = make_batch(2, 1, 10, dtype=torch.float64)
    for dtype in (np.float32, "float32", None):
        assert BatchedScaleIntensityRangePercentiles(1, 99, 0.0, 1.0, dtype=dtype)(data).dtype == torch.float64
    assert not recwarn.list
    with pytest.raises(ValueError, match=r"dtype='float64' is not supported.*cast the data"):
        BatchedScaleIntensityRangePercentilesd(["a"], 1, 99, 0.0, 1.0, dtype="float64")


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="Percentiles"):
        BatchedScaleIntensityRangePercentiles(lower=-1, upper=99, b_min=0, b_max=1)
    with pytest.raises(ValueError, match="relative=True needs both b_min and b_max"):
        BatchedScaleIntensityRangePercentiles(lower=1, upper=99, b_min=None, b_max=1, relative=True)
    with pytest.raises(ValueError, match="more than 2 dims"):
        BatchedScaleIntensityRangePercentiles(1, 99, 0, 1, channel_wise=True)(torch.zeros(2, 3))


def test_dict_version_scales_each_key_on_its_own_values():
    source = torch.arange(11.0).reshape(1, 1, 11)
    sample = {"index": 7, "source": source, "target": source * 10}
    out = BatchedScaleIntensityRangePercentilesd(keys=["source", "target"], lower=0, upper=100, b_min=0, b_max=1)(
        sample
    )
    torch.testing.assert_close(out["source"], out["target"])
    torch.testing.assert_close(out["source"].flatten(), torch.linspace(0, 1, 11))
    assert out["index"] == 7
