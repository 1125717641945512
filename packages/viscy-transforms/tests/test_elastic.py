import pytest
import torch

from viscy_transforms import BatchedCenterSpatialCrop, BatchedRand3DElasticd
from viscy_transforms._elastic import warp


def _elastic(**kwargs):
    arguments = {"sigma_range": (1.0, 2.0), "magnitude_range": (1.0, 2.0), "prob": 1.0, **kwargs}
    return BatchedRand3DElasticd(keys=["source", "target"], **arguments)


def test_zero_magnitude_is_the_identity(make_batch, device):
    data = make_batch(4, 2, 5, 8, 8, device=device)
    out = _elastic(magnitude_range=(0.0, 0.0))({"source": data, "target": data})
    torch.testing.assert_close(out["source"], data, atol=1e-5, rtol=0)


def test_one_field_for_keys_with_different_channels(make_batch):
    """The reference deformed every key with a field of its own."""
    source = make_batch(4, 1, 5, 8, 8)
    target = torch.cat([source, 1 - source], dim=1)
    out = _elastic(prob=0.5)({"source": source, "target": target})
    torch.testing.assert_close(out["target"][:, :1], out["source"])
    torch.testing.assert_close(out["target"][:, 1:], 1 - out["source"])


def _ramp(axis: int) -> torch.Tensor:
    shape = [1, 1, 6, 6, 6]
    values = torch.arange(6.0).reshape([6 if dim == axis + 2 else 1 for dim in range(5)])
    return values.expand(shape).clone()


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_displacement_channels_move_along_z_y_x(axis):
    """The reference added the Z displacement to the X sampling coordinate."""
    displacement = torch.zeros(1, 3, 6, 6, 6)
    displacement[:, axis] = 1.0
    for data_axis in range(3):
        out = warp(_ramp(data_axis), displacement, (0, 0, 0), padding_mode="border")
        expected = (_ramp(data_axis) + 1).clamp(max=5) if data_axis == axis else _ramp(data_axis)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_warp_output_window_starts_where_told():
    data = _ramp(2)
    out = warp(data, torch.zeros(1, 3, 2, 2, 3), (1, 2, 2))
    torch.testing.assert_close(out, data[..., 1:3, 2:4, 2:5], atol=1e-5, rtol=0)


def test_displacement_standard_deviation_is_the_magnitude():
    data = torch.arange(24.0).reshape(1, 1, 1, 1, 24).expand(1, 1, 24, 24, 24).clone()
    transform = BatchedRand3DElasticd(keys="x", sigma_range=(2.0, 2.0), magnitude_range=(1.5, 1.5), prob=1.0)
    transform.set_random_state(seed=0)
    # the data is X itself, so the output minus the input is the X displacement
    displacement = (transform({"x": data})["x"] - data)[0, 0, 8:16, 8:16, 8:16]
    assert 1.0 < float(displacement.std()) < 2.0


def test_spatial_size_center_crops_and_leaves_unselected_samples_just_cropped(make_batch):
    data = make_batch(6, 1, 6, 10, 10)
    out = _elastic(spatial_size=(4, -1, 8), prob=0.5).set_random_state(seed=0)({"source": data, "target": data})
    assert out["source"].shape == (6, 1, 4, 10, 8)
    cropped = BatchedCenterSpatialCrop((4, 10, 8))(data)
    same = [torch.equal(a, b) for a, b in zip(out["source"], cropped, strict=True)]
    assert 0 < sum(same) < 6
    nothing = _elastic(spatial_size=(4, -1, 8), prob=0.0)({"source": data, "target": data})
    assert torch.equal(nothing["source"], cropped)


def test_spatial_size_larger_than_the_input_fails(make_batch):
    with pytest.raises(ValueError, match="exceeds"):
        _elastic(spatial_size=8)({"source": make_batch(1, 1, 4, 8, 8), "target": make_batch(1, 1, 4, 8, 8)})


def test_keys_need_the_same_spatial_shape(make_batch):
    with pytest.raises(ValueError, match="spatial shapes"):
        _elastic()({"source": make_batch(1, 1, 4, 8, 8), "target": make_batch(1, 1, 4, 8, 6)})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "bicubic"},
        {"padding_mode": "wrap"},
        {"sigma_range": (-1.0, 1.0)},
        {"magnitude_range": 1.0},
        {"spatial_size": (4, 4)},
    ],
)
def test_invalid_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs)).split("_")[0]):
        _elastic(**kwargs)
