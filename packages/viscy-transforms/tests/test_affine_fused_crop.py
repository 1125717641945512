"""The random affine fused with the centre crop (``spatial_size``), and the smallest read no draw samples outside of."""

import math

import pytest
import torch
import torch.nn.functional as F

from viscy_transforms import BatchedCenterSpatialCrop, BatchedRandAffined
from viscy_transforms._affine import AffineParams, BatchedRandAffine, affine_matrices

RANGES = {
    "rotate_range": [math.pi, 0.2, 0.2],
    "shear_range": 0.05,
    "translate_range": 0.1,
    "scale_range": (0.8, 1.2),
}
# The example configs' affine (applications/dynaclr/examples/configs/fit.yml).
EXAMPLE = {
    "scale_range": [(1.0, 1.0), (0.8, 1.2), (0.8, 1.2)],
    "rotate_range": [3.14, 0, 0],
    "shear_range": [0, 0.01, 0.01],
}
# float64: the fused and the unfused paths sample the very same positions, rounded differently (the fused grid is
# normalized by the output's half-size, the other by the input's, then both are un-normalized by the input's size):
# a few float64 ulps times the size, 7e-14 voxel measured at 384 voxels. The data lie in [0, 1), so bilinear values
# move by at most that; 1e-10 leaves a wide margin and still catches any half-voxel or padding mistake.
FLOAT64 = {"atol": 1e-10, "rtol": 0}
# float32: the same rounding at eps_fp32 (6e-8 of a normalized coordinate, times the half-size 192 = 1e-5 voxel per
# rounding, a few roundings): 4.4e-5 measured at 384 -> 160 voxels; 2e-4 is ~4x that.
FLOAT32 = {"atol": 2e-4, "rtol": 0}


def _batch(batch, *spatial, seed=0, dtype=torch.float64, low=0.0):
    generator = torch.Generator().manual_seed(seed)
    return low + (1 - low) * torch.rand((batch, 2, *spatial), generator=generator, dtype=dtype)


def _unfused_reference(data, params):
    """Today's apply, copied before the fusion: theta from the input's half-size, output of the input's shape."""
    index = params.selected.nonzero().squeeze(1)
    if index.numel() == 0:
        return data
    shape = tuple(data.shape[2:])
    half = torch.tensor(shape, dtype=torch.float64) / 2
    translation = params.translation[index] * torch.tensor(shape, dtype=torch.float64)
    inverse = torch.linalg.inv(params.linear[index])
    normalized = inverse * half.reshape(1, 1, 3) / half.reshape(1, 3, 1)
    offset = -(inverse @ translation.unsqueeze(2)).squeeze(2) / half
    theta = torch.cat([normalized.flip(1, 2), offset.flip(1).unsqueeze(2)], dim=2).to(data.dtype)
    sub = data if index.numel() == data.shape[0] else data[index]
    grid = F.affine_grid(theta, list(sub.shape), align_corners=False)
    resampled = F.grid_sample(sub, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if index.numel() == data.shape[0]:
        return resampled
    out = data.clone()
    out[index] = resampled
    return out


def _fused_and_cropped(data, spatial_size, seed=1, **ranges):
    """The fused affine and today's affine followed by the centre crop, for one draw."""
    fused = BatchedRandAffine(spatial_size=spatial_size, **ranges).set_random_state(seed=seed)
    params = fused.draw_parameters(data.shape)
    plain = BatchedRandAffine(**ranges).apply(data, params)
    return fused.apply(data, params), BatchedCenterSpatialCrop(spatial_size)(plain), params


def _draw(angles, scales, shears=None, translation=None):
    """Parameters of given affines: (N, 3) angles about Z, Y, X, (N, 3) ZYX scales."""
    angles = torch.tensor(angles, dtype=torch.float64)
    count = angles.shape[0]
    shears = torch.zeros(count, 6, dtype=torch.float64) if shears is None else shears
    translation = torch.zeros(count, 3, dtype=torch.float64) if translation is None else translation
    linear = affine_matrices(angles, shears, torch.tensor(scales, dtype=torch.float64).expand(count, 3))
    return AffineParams(selected=torch.ones(count, dtype=torch.bool), linear=linear, translation=translation)


def test_without_spatial_size_the_output_is_bit_identical_to_the_unfused_affine():
    data = _batch(8, 5, 20, 21, dtype=torch.float32)
    transform = BatchedRandAffine(prob=0.6, mode="bilinear", **RANGES).set_random_state(seed=0)
    for _ in range(3):
        out = transform(data)
        assert 0 < int(transform.params.selected.sum()) < 8
        assert torch.equal(out, _unfused_reference(data, transform.params))
    everything = BatchedRandAffine(prob=1.0, **RANGES)
    assert torch.equal(everything(data), _unfused_reference(data, everything.params))


@pytest.mark.parametrize(
    ("spatial", "spatial_size"),
    [
        ((7, 40, 41), (5, 20, 21)),  # even and odd margins: the crop's centre is 1/2 voxel off the input's
        ((8, 41, 40), (5, 21, 20)),
        ((6, 33, 32), (6, 17, 17)),
        ((5, 30, 30), (-1, 16, 16)),  # a non-positive entry keeps the input's size
        ((6, 20, 20), 5),  # an int applies to Z, Y and X
    ],
)
def test_fused_affine_equals_the_affine_then_the_centre_crop(spatial, spatial_size):
    data = _batch(8, *spatial)
    fused, cropped, params = _fused_and_cropped(data, spatial_size, prob=0.7, **RANGES)
    assert 0 < int(params.selected.sum()) < 8
    assert fused.shape == cropped.shape
    torch.testing.assert_close(fused, cropped, **FLOAT64)


@pytest.mark.parametrize(("read", "dtype", "tolerance"), [(384, torch.float64, FLOAT64), (384, torch.float32, FLOAT32)])
def test_fused_affine_at_the_example_sizes(read, dtype, tolerance):
    data = _batch(4, 2, read, read, dtype=dtype)
    fused, cropped, _ = _fused_and_cropped(data, (2, 160, 160), prob=1.0, **RANGES)
    torch.testing.assert_close(fused, cropped, **tolerance)


def test_45_degrees_at_scale_0_8_from_a_too_small_read_pads_the_same_corners_with_zeros():
    """From a 200^2 read the output's corners sample 140.5 voxels out: zero padding, in both paths alike."""
    data = _batch(2, 2, 200, 200, low=0.5)
    params = _draw([[math.pi / 4, 0, 0], [-3 * math.pi / 4, 0, 0]], [1.0, 0.8, 0.8])
    fused = BatchedRandAffine(spatial_size=(2, 160, 160)).apply(data, params)
    cropped = BatchedCenterSpatialCrop((2, 160, 160))(BatchedRandAffine().apply(data, params))
    torch.testing.assert_close(fused, cropped, **FLOAT64)
    corners = fused[..., [0, 0, -1, -1], [0, -1, 0, -1]]
    assert bool((corners == 0).all()), "the corners sample outside the read"
    assert bool((fused[..., 80, 80] >= 0.5).all()), "the centre samples the read"


def test_quarter_turns_in_nearest_mode_are_exact():
    data = _batch(3, 4, 12, 12)  # square, so that quarter turns land on voxel centres, not on ties
    params = _draw([[math.pi / 2, 0, 0], [math.pi, 0, 0], [-math.pi / 2, 0, 0]], [1.0, 1.0, 1.0])
    fused = BatchedRandAffine(mode="nearest", spatial_size=(4, 7, 6)).apply(data, params)
    cropped = BatchedCenterSpatialCrop((4, 7, 6))(BatchedRandAffine(mode="nearest").apply(data, params))
    assert torch.equal(fused, cropped)


def test_samples_left_alone_are_centre_cropped():
    data = _batch(8, 5, 20, 21)
    crop = BatchedCenterSpatialCrop((3, 10, 11))
    assert torch.equal(BatchedRandAffine(prob=0.0, spatial_size=(3, 10, 11), **RANGES)(data), crop(data))
    transform = BatchedRandAffine(prob=0.5, spatial_size=(3, 10, 11), **RANGES).set_random_state(seed=0)
    out = transform(data)
    selected = transform.params.selected
    assert 0 < int(selected.sum()) < 8
    assert torch.equal(out[~selected], crop(data)[~selected])
    assert not torch.equal(out[selected], crop(data)[selected])


def test_dict_version_sets_the_output_size_and_shares_the_geometry():
    source = _batch(4, 5, 20, 20)
    target = torch.cat([source, 2 * source], dim=1)
    transform = BatchedRandAffined(keys=["source", "target"], prob=1.0, **RANGES)
    assert transform.spatial_size is None
    transform.spatial_size = [3, 10, 10]
    assert transform.spatial_size == transform.transform.spatial_size == (3, 10, 10)
    out = transform({"source": source, "target": target})
    assert out["source"].shape == (4, 2, 3, 10, 10)
    torch.testing.assert_close(out["target"], torch.cat([out["source"], 2 * out["source"]], dim=1))


@pytest.mark.parametrize("spatial_size", ["abc", (10, 10), (1.0, 10, 10), (True, 10, 10), 2.5])
def test_invalid_spatial_sizes_are_refused(spatial_size):
    with pytest.raises(ValueError, match="spatial_size must be"):
        BatchedRandAffine(spatial_size=spatial_size)
    with pytest.raises(ValueError, match="spatial_size must be"):
        BatchedRandAffined(keys="x").spatial_size = spatial_size


def test_an_output_larger_than_the_input_is_refused():
    with pytest.raises(ValueError, match=r"exceeds the input spatial shape \(5, 20, 20\)"):
        BatchedRandAffine(prob=1.0, spatial_size=(5, 24, 20))(_batch(1, 5, 20, 20))


def test_smallest_read_size_needs_a_positive_output_size():
    with pytest.raises(ValueError, match="positive ints"):
        BatchedRandAffine().smallest_read_size()
    with pytest.raises(ValueError, match="positive ints"):
        BatchedRandAffine(spatial_size=(-1, 160, 160)).smallest_read_size()


def test_smallest_read_size_of_the_example_configs_is_284():
    """Y: ``(79.5 sqrt 2 + tan(0.01)^2 * 79.5 sqrt 2) / 0.8 + tan(0.01) * 14.5 / 0.8 = 140.72``, 2 * 140.72 + 1 = 282.4.

    X: ``79.5 sqrt 2 / 0.8 = 140.54``; Z: ``14.5 + tan(0.01) * 112.4 = 15.62``, 2 * 15.62 + 1 = 32.2. Each rounded up to
    the parity of the output (so that the read and the output share their centre).
    """
    transform = BatchedRandAffined(keys="x", prob=0.8, **EXAMPLE)
    assert transform.smallest_read_size((30, 160, 160)) == (34, 284, 284)
    transform.spatial_size = (30, 160, 160)
    assert transform.smallest_read_size() == (34, 284, 284)


@pytest.mark.parametrize(
    ("ranges", "spatial_size", "expected"),
    [
        ({"rotate_range": [math.pi, 0, 0], "scale_range": (0.8, 1.2)}, (1, 160, 160), (1, 284, 284)),  # 282.08
        ({"rotate_range": [math.pi, 0, 0], "scale_range": (0.8, 1.2)}, (1, 161, 161), (1, 285, 285)),  # 283.84
        ({"rotate_range": [(0.0, 0.1), 0, 0]}, (1, 160, 160), (1, 176, 176)),  # 79.5 (cos 0.1 + sin 0.1) = 87.04
        ({"translate_range": [0, 0.1, 0]}, (3, 160, 160), (3, 200, 160)),  # n = 2 (79.5 + 0.1 n) + 1
        ({"scale_range": [(1, 1), (2, 2), (0.5, 0.5)]}, (3, 10, 10), (3, 10, 20)),  # magnification needs no margin
        ({"rotate_range": [0, 0, 0.1]}, (30, 160, 160), (46, 164, 160)),  # X never moves when rotating about X
        ({}, (3, 7, 8), (3, 7, 8)),
    ],
)
def test_smallest_read_size_by_hand(ranges, spatial_size, expected):
    assert BatchedRandAffine(**ranges).smallest_read_size(spatial_size) == expected


@pytest.mark.parametrize(
    ("ranges", "tight"),
    [
        (EXAMPLE, True),
        ({**EXAMPLE, "translate_range": [0, 0.05, (-0.1, 0.0)]}, True),
        ({"rotate_range": [math.pi, 0, 0], "shear_range": 0.05, "scale_range": (0.8, 1.2)}, True),
        ({"rotate_range": [math.pi, 0.1, 0.1], "shear_range": 0.05, "scale_range": (0.8, 1.2)}, False),
    ],
)
def test_the_read_holds_every_sampled_position_and_is_the_smallest(ranges, tight):
    """Positions sampled with random angles at the vertices of the other ranges stay within the bound.

    Where the bound is exact (rotation about Z only), they come within 0.05 voxel of it, and need the same read.
    """
    transform = BatchedRandAffine(**ranges)
    output = (6, 40, 40)
    read = transform.smallest_read_size(output)
    bound = transform._reach(output, read)
    generator = torch.Generator().manual_seed(0)
    count = 20000

    def vertices(ranges):
        pick = torch.randint(0, 2, (count, ranges.shape[0]), generator=generator)
        return ranges[torch.arange(ranges.shape[0]), pick]

    angles = transform._uniform(transform._rotate[:, 0], transform._rotate[:, 1], (count, 3))
    linear = affine_matrices(angles, vertices(transform._shear), transform._scale[:, 0].expand(count, 3))
    translation = vertices(transform._translate) * torch.tensor(read, dtype=torch.float64)
    half = (torch.tensor(output, dtype=torch.float64) - 1) / 2
    corners = torch.cartesian_prod(*(torch.stack([-h, h]) for h in half))
    offsets = (corners.unsqueeze(0) - translation.unsqueeze(1)).unsqueeze(3)
    reached = (torch.linalg.inv(linear).unsqueeze(1) @ offsets).squeeze(3).abs().amax(dim=(0, 1))
    assert bool((reached <= bound + 1e-9).all()), (reached, bound)
    assert all(2 * r + 1 <= n for r, n in zip(reached.tolist(), read, strict=True))
    if tight:
        torch.testing.assert_close(reached, bound, atol=0.05, rtol=0)
        assert all(2 * r + 1 > n - 2 for r, n, o in zip(reached.tolist(), read, output, strict=True) if n > o)


@pytest.mark.parametrize(
    "ranges",
    [
        {**EXAMPLE, "translate_range": [0.05, 0.05, (-0.1, 0.0)]},
        {**RANGES, "rotate_range": [math.pi, 0.05, 0.05], "translate_range": None},
    ],
)
def test_no_draw_samples_outside_the_smallest_read(ranges):
    """The fused affine from the smallest read equals it from a read 20 voxels larger centred on the same point."""
    transform = BatchedRandAffine(prob=1.0, spatial_size=(4, 40, 40), **ranges).set_random_state(seed=0)
    read = transform.smallest_read_size()
    larger = tuple(n + 20 for n in read)
    data = _batch(32, *larger, low=0.5)
    params = transform.draw_parameters(data.shape)
    # the translation is a fraction of the read: the same voxels in both
    scaled = torch.tensor(read, dtype=torch.float64) / torch.tensor(larger, dtype=torch.float64)
    same_shift = AffineParams(params.selected, params.linear, params.translation * scaled)
    small = transform.apply(BatchedCenterSpatialCrop(read)(data), params)
    torch.testing.assert_close(small, transform.apply(data, same_shift), **FLOAT64)


def test_two_voxels_less_than_the_smallest_read_pads_the_worst_draw():
    """Rotating 160^2 by 45 degrees at scale 0.8 samples 140.54 voxels out: a 284^2 read holds it, 282^2 does not."""
    transform = BatchedRandAffine(rotate_range=[math.pi, 0, 0], scale_range=(0.8, 1.2), spatial_size=(1, 160, 160))
    assert transform.smallest_read_size() == (1, 284, 284)
    data = _batch(1, 1, 300, 300, low=0.5)
    worst = _draw([[math.pi / 4, 0, 0]], [1.0, 0.8, 0.8])
    full = transform.apply(data, worst)
    torch.testing.assert_close(transform.apply(BatchedCenterSpatialCrop((1, 284, 284))(data), worst), full, **FLOAT64)
    short = transform.apply(BatchedCenterSpatialCrop((1, 282, 282))(data), worst)
    assert float((short - full).abs().max()) > 1e-2


def test_with_a_translate_reference_size_the_smallest_read_gives_the_output_of_the_configured_read():
    """A data module reading less than configured keeps the translations' length: the outputs stay the same."""
    ranges = {**EXAMPLE, "translate_range": [0.0, 0.05, (-0.08, 0.02)]}
    configured = (4, 120, 120)
    on_configured = BatchedRandAffined(keys="x", prob=1.0, **ranges)
    on_configured.spatial_size = (4, 40, 40)
    on_smallest = BatchedRandAffined(keys="x", prob=1.0, **ranges)
    on_smallest.spatial_size = (4, 40, 40)
    on_smallest.translate_reference_size = configured
    read = on_smallest.smallest_read_size()
    assert read[1] < configured[1]  # the translation reaches 0.08 * 120 = 9.6 voxels, not 0.08 * read
    data = _batch(16, *configured, low=0.5)
    for seed in range(3):
        expected = on_configured.set_random_state(seed=seed)({"x": data})["x"]
        actual = on_smallest.set_random_state(seed=seed)({"x": BatchedCenterSpatialCrop(read)(data)})["x"]
        torch.testing.assert_close(actual, expected, **FLOAT64)
    with pytest.raises(ValueError, match=r"translate_reference_size must be None, an int or 3 ints"):
        on_smallest.translate_reference_size = (4, 0.5, 120)
    with pytest.raises(ValueError, match="translate_reference_size must be positive"):
        on_smallest.translate_reference_size = (4, 0, 120)
