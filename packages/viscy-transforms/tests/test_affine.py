import math

import pytest
import torch

from viscy_transforms import BatchedRandAffined


def _affine(data, **ranges):
    return BatchedRandAffined(keys="x", prob=1.0, **ranges)({"x": data})["x"]


def test_quarter_turn_about_z_is_rot90_in_the_yx_plane(make_batch, device):
    data = make_batch(2, 2, 3, 6, 6, device=device)
    out = _affine(data, rotate_range=[(math.pi / 2, math.pi / 2), 0, 0])
    torch.testing.assert_close(out, torch.rot90(data, 1, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_quarter_turn_about_x_is_rot90_in_the_zy_plane(make_batch):
    data = make_batch(1, 1, 5, 5, 3)
    out = _affine(data, rotate_range=[0, 0, (math.pi / 2, math.pi / 2)])
    torch.testing.assert_close(out, torch.rot90(data, 1, dims=(2, 3)), atol=1e-5, rtol=0)


def test_rotation_is_rigid_on_anisotropic_volumes():
    """Rotations act in voxel units: one voxel off-centre along Z lands one voxel off-centre along Y."""
    data = torch.zeros(1, 1, 5, 9, 3)
    data[0, 0, 3, 4, 1] = 1.0
    out = _affine(data, rotate_range=[0, 0, (math.pi / 2, math.pi / 2)])
    expected = torch.zeros_like(data)
    expected[0, 0, 2, 5, 1] = 1.0
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_translation_is_a_fraction_of_the_size():
    ramp = torch.arange(8.0).reshape(1, 1, 1, 1, 8).expand(1, 1, 2, 3, 8)
    out = _affine(ramp, translate_range=[0, 0, (0.25, 0.25)])
    # Not exact by construction: the sampling grid is normalized to [-1, 1] and back, so positions land within a
    # few eps_fp32 * size of the integers (measured 2.4e-7 with ATEN_CPU_CAPABILITY=default, 0 with avx2/avx512;
    # 4.8e-7 for a 16-voxel ramp). 1e-5 is ~10x eps_fp32 * 8 voxels; a translation off by a voxel moves values by 1.
    expected = torch.tensor([0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    torch.testing.assert_close(out[0, 0, 0, 0], expected, atol=1e-5, rtol=0)


def test_scale_two_zooms_in_about_the_centre():
    ramp = torch.arange(8.0).reshape(1, 1, 1, 1, 8).expand(1, 1, 2, 3, 8)
    out = _affine(ramp, scale_range=(2.0, 2.0))
    expected = torch.tensor([3.5 + (x - 3.5) / 2 for x in range(8)])
    torch.testing.assert_close(out[0, 0, 1, 1], expected, atol=1e-5, rtol=0)  # grid rounding, as for translation


def test_shear_angle_in_radians_shifts_rows_by_its_tangent():
    """Facet yx (index 3): y' = y + tan(angle) * x, about the centre."""
    angle = math.atan(0.1)
    ramp = torch.arange(16.0).reshape(1, 1, 1, 16, 1).expand(1, 1, 1, 16, 8)
    out = _affine(ramp, shear_range=[0, 0, 0, (angle, angle), 0, 0])
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(8.0), indexing="ij")
    expected = y - 0.1 * (x - 3.5)
    torch.testing.assert_close(out[0, 0, 0, 2:14], expected[2:14], atol=1e-4, rtol=0)


def _slopes(out):
    """Per-sample slope along X and along Y of the centre of an output."""
    centre = out[:, 0, 2, 4:12, 4:12]
    return centre[:, 0, 1:] - centre[:, 0, :-1], centre[:, 1:, 0] - centre[:, :-1, 0]


def test_flat_scale_range_is_one_isotropic_factor_and_not_reversed():
    """The reference reversed a flat (min, max) scale range."""
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    ramp = (x + 100 * y).expand(32, 1, 5, 16, 16).clone()
    out = BatchedRandAffined(keys="x", prob=1.0, scale_range=(1.25, 2.0)).set_random_state(seed=0)({"x": ramp})["x"]
    along_x, along_y = _slopes(out)
    scale_x = 1 / along_x.mean(dim=1)
    scale_y = 100 / along_y.mean(dim=1)
    assert bool(((scale_x > 1.25 - 1e-3) & (scale_x < 2.0 + 1e-3)).all())
    torch.testing.assert_close(scale_x, scale_y, atol=1e-3, rtol=0)
    assert scale_x.std() > 0.1


def test_per_axis_scale_ranges_are_in_zyx_order():
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    ramp = (x + 100 * y).expand(8, 1, 5, 16, 16).clone()
    out = _affine(ramp, scale_range=[(1.0, 1.0), (1.0, 1.0), (2.0, 2.0)])
    along_x, along_y = _slopes(out)
    torch.testing.assert_close(along_x, torch.full_like(along_x, 0.5))
    torch.testing.assert_close(along_y, torch.full_like(along_y, 100.0))


@pytest.mark.parametrize(
    "ranges",
    [
        {"rotate_range": 0.3},
        {"shear_range": 0.1},
        {"translate_range": 0.2},
        {"shear_range": [0.1, 0.1, 0.1]},
        {"shear_range": [0.1, 0.0, (0.0, 0.2), 0.0, 0.0, 0.1]},
    ],
)
def test_scalar_and_short_forms_are_accepted(make_batch, ranges):
    """The reference raised for scalar rotate, shear and translate and for 3-value shear."""
    data = make_batch(4, 1, 6, 8, 8)
    out = _affine(data, **ranges)
    assert out.shape == data.shape
    assert not torch.equal(out, data)


def test_three_value_shear_sets_the_first_three_facets(make_batch):
    data = make_batch(4, 1, 6, 8, 8)
    short = BatchedRandAffined(keys="x", prob=1.0, shear_range=[0.1, 0.2, 0.3]).set_random_state(seed=1)
    full = BatchedRandAffined(keys="x", prob=1.0, shear_range=[0.1, 0.2, 0.3, 0, 0, 0]).set_random_state(seed=1)
    assert torch.equal(short({"x": data})["x"], full({"x": data})["x"])


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("rotate_range", (0.1, 0.2)),
        ("rotate_range", "0.1"),
        ("shear_range", [0.1, 0.1]),
        ("translate_range", [0.1, (0.1, 0.2, 0.3), 0.1]),
        ("scale_range", 1.5),
        ("scale_range", (0.0, 1.0)),
        ("scale_range", [(1, 2), (1, 2)]),
    ],
)
def test_invalid_ranges_name_the_valid_forms(argument, value):
    with pytest.raises(ValueError, match=argument):
        BatchedRandAffined(keys="x", **{argument: value})


def test_invalid_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        BatchedRandAffined(keys="x", mode="bicubic")


def test_same_affine_for_keys_with_different_channels(make_batch):
    """The reference drew a new affine for every key, misaligning source and target."""
    source = make_batch(8, 1, 4, 8, 8)
    target = torch.cat([source, 2 * source], dim=1)
    transform = BatchedRandAffined(keys=["source", "target"], prob=0.5, rotate_range=1.0, scale_range=(0.8, 1.2))
    out = transform({"source": source, "target": target})
    torch.testing.assert_close(out["target"][:, :1], out["source"])
    torch.testing.assert_close(out["target"][:, 1:], 2 * out["source"])


def test_only_5d_batches():
    with pytest.raises(ValueError, match=r"\(B, C, Z, Y, X\)"):
        _affine(torch.zeros(1, 1, 4, 4), rotate_range=0.1)
