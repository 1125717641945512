import pytest
import torch
from monai.transforms import Compose

from viscy_data._typing import INDEX_COLUMNS, LABEL_INFECTION_STATE, HCSStackIndex
from viscy_data._utils import (
    BatchedCenterSpatialCropd,
    _channel_indices,
    _collate_samples,
    _ensure_channel_list,
    _loader_kwargs,
    _require_columns,
    _search_int_in_str,
    _split_indices,
)
from viscy_data.channel_wise import collate_norm_meta, transform_channel_wise
from viscy_data.normalization import select_timepoint
from viscy_data.seeding import WorkerTransformSeeder


def test_batched_center_crop_keeps_batch_and_channel():
    image = torch.arange(2 * 3 * 5 * 6 * 6, dtype=torch.float32).reshape(2, 3, 5, 6, 6)
    cropped = BatchedCenterSpatialCropd(keys=["a"], roi_size=(3, 2, 4))({"a": image, "b": image})
    assert cropped["a"].shape == (2, 3, 3, 2, 4)
    torch.testing.assert_close(cropped["a"], image[:, :, 1:4, 2:4, 1:5])
    assert cropped["b"] is image


def test_batched_center_crop_missing_key():
    crop = BatchedCenterSpatialCropd(keys=["a", "z"], roi_size=(1, 1, 1), allow_missing_keys=True)
    assert crop({"a": torch.zeros(1, 1, 3, 3, 3)})["a"].shape == (1, 1, 1, 1, 1)
    with pytest.raises(KeyError):
        BatchedCenterSpatialCropd(keys=["z"], roi_size=(1, 1, 1))({"a": torch.zeros(1, 1, 3, 3, 3)})


def test_ensure_channel_list():
    assert _ensure_channel_list("GFP") == ["GFP"]
    assert _ensure_channel_list(("a", "b")) == ["a", "b"]
    with pytest.raises(TypeError, match="string or sequence of strings"):
        _ensure_channel_list(3)


def test_search_int_in_str():
    assert _search_int_in_str(r"(?<=_p)\d{3}", "img_p012_z3_cp_masks.png") == "012"
    with pytest.raises(ValueError, match="Cannot find pattern"):
        _search_int_in_str(r"\d{5}", "abc")


def test_channel_indices_lists_channels():
    assert _channel_indices(["Phase3D", "GFP", "DAPI"], ["DAPI", "Phase3D"]) == [2, 0]
    with pytest.raises(ValueError, match=r"\['RFP'\] not found; the data has channels \['Phase3D', 'GFP'\]"):
        _channel_indices(["Phase3D", "GFP"], ["RFP"])


def test_require_columns_lists_found():
    with pytest.raises(ValueError, match=r"lacks columns \['x'\]; columns present: \['t', 'y'\]"):
        _require_columns(["t", "y"], ["t", "y", "x"], "Tracks")


def test_split_indices_seeded_and_disjoint():
    train, val = _split_indices(10, 0.8, seed=3)
    assert len(train) == 8
    assert len(val) == 2
    assert sorted(train + val) == list(range(10))
    assert _split_indices(10, 0.8, seed=3) == (train, val)
    assert _split_indices(10, 0.8, seed=4) != (train, val)
    with pytest.raises(ValueError, match="no training FOV"):
        _split_indices(1, 0.5, seed=0)
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        _split_indices(4, 1.5, seed=0)


def test_loader_kwargs_only_pass_worker_options_with_workers():
    assert _loader_kwargs(0, 4, True, False) == {"num_workers": 0, "pin_memory": False}
    kwargs = _loader_kwargs(2, 4, True, True)
    seeder = kwargs.pop("worker_init_fn")
    assert isinstance(seeder, WorkerTransformSeeder)
    assert seeder.rank == 0
    assert kwargs == {"num_workers": 2, "pin_memory": True, "prefetch_factor": 4, "persistent_workers": True}
    assert "worker_init_fn" not in _loader_kwargs(2, 4, False, False, thread_workers=True)


def _meta(value):
    return {"GFP": {"fov_statistics": {"mean": torch.tensor(value), "std": torch.tensor(2.0)}}}


def test_collate_norm_meta():
    assert collate_norm_meta([None, None]) is None
    collated = collate_norm_meta([_meta(1.0), _meta(3.0)])
    torch.testing.assert_close(collated["GFP"]["fov_statistics"]["mean"], torch.tensor([1.0, 3.0]))
    with pytest.raises(ValueError, match="1 of 2 samples have no normalization metadata"):
        collate_norm_meta([_meta(1.0), None])


def test_collate_samples_flattens_lists_not_index():
    index = HCSStackIndex("/A/1/0/0", 1, 2)
    batch = [
        {"index": index, "source": [torch.zeros(1, 2, 2), torch.ones(1, 2, 2)], "norm_meta": _meta(1.0)},
        {"index": index, "source": [torch.zeros(1, 2, 2), torch.ones(1, 2, 2)], "norm_meta": _meta(2.0)},
    ]
    collated = _collate_samples(batch)
    assert collated["source"].shape == (4, 1, 2, 2)
    names, times, zs = collated["index"]
    assert list(names) == ["/A/1/0/0"] * 2
    assert times.tolist() == [1, 1]
    assert zs.tolist() == [2, 2]
    assert collated["norm_meta"]["GFP"]["fov_statistics"]["mean"].tolist() == [1.0, 2.0]


def test_collate_samples_without_norm_meta():
    batch = [{"source": torch.zeros(1, 2)}, {"source": torch.ones(1, 2)}]
    assert set(_collate_samples(batch)) == {"source"}


def testtransform_channel_wise_uses_names_and_norm_meta():
    patch = torch.stack([torch.full((1, 2, 2), 5.0), torch.full((1, 2, 2), 7.0)], dim=1)  # (B=1, C=2, ...)

    def subtract_gfp_mean(sample):
        sample = dict(sample)
        sample["GFP"] = sample["GFP"] - sample["norm_meta"]["GFP"]["fov_statistics"]["mean"].reshape(-1, 1, 1, 1)
        return sample

    out = transform_channel_wise(Compose([subtract_gfp_mean]), ["Phase3D", "GFP"], patch, [_meta(3.0)])
    assert out.shape == patch.shape
    assert out[0, 0].unique().item() == 5.0
    assert out[0, 1].unique().item() == 4.0
    with pytest.raises(ValueError, match="channel names"):
        transform_channel_wise(Compose([]), ["a"], patch, None)


def test_select_timepoint_resolves_nested_level_without_copying_others():
    stats_t1 = {"mean": torch.tensor(5.0)}
    norm_meta = {
        "GFP": {
            "fov_statistics": {"mean": torch.tensor(1.0)},
            "timepoint_statistics": {"0": {"mean": torch.tensor(4.0)}, "1": stats_t1},
        },
        "Phase3D": {"dataset_statistics": {"mean": torch.tensor(0.0)}},
    }
    resolved = select_timepoint(norm_meta, 1)
    assert resolved["GFP"]["timepoint_statistics"] is stats_t1
    assert "timepoint_statistics" not in resolved["Phase3D"]
    assert set(norm_meta["GFP"]["timepoint_statistics"]) == {"0", "1"}  # input untouched
    assert "timepoint_statistics" not in select_timepoint(norm_meta, 7)["GFP"]
    assert select_timepoint(None, 0) is None


def test_label_maps_are_immutable_and_index_columns():
    with pytest.raises(TypeError):
        LABEL_INFECTION_STATE["infected"] = 5
    assert INDEX_COLUMNS == ["fov_name", "track_id", "t", "id", "parent_track_id", "parent_id", "z", "y", "x"]
