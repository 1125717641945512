import pytest
import torch
from monai.transforms import CenterSpatialCrop

from viscy_transforms import (
    BatchedCenterSpatialCrop,
    BatchedCenterSpatialCropd,
    BatchedRandSpatialCrop,
    BatchedRandSpatialCropd,
)

CENTER_CASES_3D = [
    ((8, 8, 8), (4, 4, 4)),
    ((7, 9, 11), (4, 5, 6)),
    ((7, 9, 11), (3, 3, 3)),
    ((5, 6, 7), (8, 8, 8)),
    ((5, 6, 7), (-1, 0, 4)),
    ((6, 6, 6), 3),
    ((5, 16, 16), (5, 10, 10)),
]
CENTER_CASES_2D = [((8, 8), (4, 4)), ((7, 9), (4, 5)), ((7, 9), (10, 3)), ((7, 9), (-1, 2)), ((6, 6), 5)]


@pytest.mark.parametrize(("spatial", "roi"), CENTER_CASES_3D + CENTER_CASES_2D)
def test_center_crop_matches_monai_per_sample(make_batch, spatial, roi):
    data = make_batch(3, 2, *spatial)
    out = BatchedCenterSpatialCrop(roi)(data)
    for sample, cropped in zip(data, out, strict=True):
        assert torch.equal(cropped, CenterSpatialCrop(roi)(sample).as_tensor())


def test_center_crop_golden():
    data = torch.arange(25.0).reshape(1, 1, 5, 5)
    assert BatchedCenterSpatialCrop(3)(data).flatten().tolist() == [6, 7, 8, 11, 12, 13, 16, 17, 18]


def test_center_crop_dict_passes_other_entries(make_batch):
    data = make_batch(2, 1, 6, 6, 6)
    sample = {"index": [1, 2], "source": data, "target": data + 1}
    out = BatchedCenterSpatialCropd(keys=["source", "target"], roi_size=(2, 4, 4))(sample)
    assert out["index"] is sample["index"]
    assert out["source"].shape == out["target"].shape == (2, 1, 2, 4, 4)
    assert torch.equal(out["target"], out["source"] + 1)


def _coded(batch, *spatial):
    """Every voxel holds its own flat spatial index, so a window's first value gives its start."""
    volume = torch.arange(torch.Size(spatial).numel(), dtype=torch.float64).reshape(spatial)
    return volume.expand(batch, 2, *spatial).clone()


def _start_of(window: torch.Tensor, spatial) -> tuple[int, ...]:
    return tuple(int(i) for i in torch.unravel_index(window[0].flatten()[0].long(), spatial))


def test_random_crop_windows_are_exact_and_drawn_per_sample(device):
    spatial = (6, 10, 12)
    data = _coded(32, *spatial).to(device)
    out = BatchedRandSpatialCrop(roi_size=(3, 4, 5)).set_random_state(seed=0)(data)
    assert out.shape == (32, 2, 3, 4, 5)
    assert out.is_contiguous()
    starts = set()
    for sample, window in zip(data, out, strict=True):
        z, y, x = _start_of(window, spatial)
        assert torch.equal(window, sample[:, z : z + 3, y : y + 4, x : x + 5])
        starts.add((z, y, x))
    assert len(starts) > 20


def test_random_crop_positions_cover_the_valid_range():
    data = _coded(64, 1, 10, 10)
    out = BatchedRandSpatialCrop(roi_size=(1, 8, 8)).set_random_state(seed=0)(data)
    ys = {_start_of(w, (1, 10, 10))[1] for w in out}
    assert ys == {0, 1, 2}


@pytest.mark.parametrize("crop", [BatchedRandSpatialCrop(roi_size=5), BatchedRandSpatialCropd(keys="x", roi_size=5)])
def test_random_crop_rejects_4d_batches(make_batch, crop):
    """The reference raised for (B, C, Y, X) input; accepting it crops Z-less data the caller meant as 3D."""
    data = make_batch(4, 1, 9, 9)
    with pytest.raises(ValueError, match=r"expects a batch shaped \(B, C, Z, Y, X\), got shape \(4, 1, 9, 9\)"):
        crop({"x": data} if isinstance(crop, BatchedRandSpatialCropd) else data)


def test_random_crop_roi_is_clamped_and_non_positive_means_full_size(make_batch):
    data = make_batch(2, 1, 4, 6, 8)
    assert BatchedRandSpatialCrop(roi_size=(10, -1, 3))(data).shape == (2, 1, 4, 6, 3)


def test_random_crop_without_random_center_is_the_center_crop(make_batch):
    """The reference raised IndexError for random_center=False."""
    data = make_batch(3, 2, 7, 9, 11)
    out = BatchedRandSpatialCrop(roi_size=(4, 5, 6), random_center=False)(data)
    assert torch.equal(out, BatchedCenterSpatialCrop((4, 5, 6))(data))


def test_random_size_is_refused():
    with pytest.raises(ValueError, match="does not support random size"):
        BatchedRandSpatialCrop(roi_size=4, random_size=True)


def test_max_roi_size_default_is_accepted_silently_and_a_value_refused_naming_roi_size(recwarn):
    BatchedRandSpatialCropd(["a"], roi_size=4, max_roi_size=None)
    assert not recwarn.list
    with pytest.raises(ValueError, match=r"max_roi_size=\(6, 6, 6\) is not supported.*window size as roi_size"):
        BatchedRandSpatialCropd(["a"], roi_size=4, max_roi_size=(6, 6, 6))
    with pytest.raises(ValueError, match="max_roi_size=6 is not supported"):
        BatchedRandSpatialCrop(roi_size=4, max_roi_size=6)


def test_randomize_false_before_a_draw_fails(make_batch):
    with pytest.raises(RuntimeError, match="randomize=True"):
        BatchedRandSpatialCrop(roi_size=2)(make_batch(2, 1, 4, 4, 4), randomize=False)


def test_randomize_false_reuses_the_windows_and_randomize_draws_new_ones():
    data = _coded(8, 8, 8, 8)
    crop = BatchedRandSpatialCrop(roi_size=3).set_random_state(seed=0)
    first = crop(data)
    assert torch.equal(crop(data, randomize=False), first)
    assert not torch.equal(crop(data), first)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 1, 1, 8, 8, 8)])
def test_random_crop_rejects_unbatched_shapes(shape):
    with pytest.raises(ValueError, match=r"\(B, C, Z, Y, X\)"):
        BatchedRandSpatialCrop(roi_size=2)(torch.zeros(shape))


def test_random_crop_roi_of_the_wrong_length_fails(make_batch):
    with pytest.raises(ValueError, match="roi_size"):
        BatchedRandSpatialCrop(roi_size=(2, 2))(make_batch(1, 1, 4, 4, 4))


def test_dict_random_crop_uses_the_same_windows_for_every_key():
    data = _coded(16, 6, 10, 10)
    sample = {"index": "kept", "source": data[:, :1], "target": data}
    out = BatchedRandSpatialCropd(keys=["source", "target"], roi_size=(2, 4, 4))(sample)
    assert out["index"] == "kept"
    assert torch.equal(out["target"][:, :1], out["source"])


def test_dict_random_crop_needs_equal_spatial_shapes(make_batch):
    sample = {"source": make_batch(2, 1, 4, 8, 8), "target": make_batch(2, 1, 4, 8, 6)}
    with pytest.raises(ValueError, match="spatial shapes"):
        BatchedRandSpatialCropd(keys=["source", "target"], roi_size=2)(sample)


def test_dict_random_crop_missing_keys(make_batch):
    sample = {"source": make_batch(2, 1, 4, 8, 8)}
    with pytest.raises(KeyError, match="target"):
        BatchedRandSpatialCropd(keys=["source", "target"], roi_size=2)(sample)
    out = BatchedRandSpatialCropd(keys=["source", "target"], roi_size=2, allow_missing_keys=True)(sample)
    assert out["source"].shape == (2, 1, 2, 2, 2)
