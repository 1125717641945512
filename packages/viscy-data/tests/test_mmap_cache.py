import tempfile

import numpy as np
import pytest
import torch

pytest.importorskip("tensordict")

from viscy_data.gpu_aug import CachedOmeZarrDataset, FOVVolumeDataset
from viscy_data.mmap_cache import MmappedDataModule, MmappedDataset
from viscy_data.ome_compat import fov_name, open_ome_zarr


def _double(sample):
    return {key: value * 2 if key != "norm_meta" else value for key, value in sample.items()}


def _module(plate, scratch, **kwargs):
    settings = {
        "channels": ["Phase3D", "GFP"],
        "batch_size": 2,
        "num_workers": 0,
        "split_ratio": 0.5,
        "preprocess_transforms": [_double],
        "train_cpu_transforms": [],
        "val_cpu_transforms": [],
        "train_gpu_transforms": [],
        "val_gpu_transforms": [],
        "pin_memory": False,
        "prefetch_factor": 4,
        "scratch_dir": scratch,
    }
    settings.update(kwargs)
    return MmappedDataModule(plate.store_path, **settings)


def test_setup_twice_and_preprocessed_once(synthetic_plate, tmp_path):
    dm = _module(synthetic_plate, tmp_path, include_wells=["A/1", "B/1"], exclude_fovs=["B/1/1"])
    assert dm.prefetch_factor is None  # no workers
    dm.setup("fit")
    dm.setup("fit")  # the .mmap files exist: replaced, not an error
    assert dm.cache_dir.is_relative_to(tmp_path)
    fovs = {fov_name(p) for p in dm.train_dataset.positions + dm.val_dataset.positions}
    assert fovs == {"A/1/0", "A/1/1", "B/1/0"}
    dataset = dm.train_dataset
    (sample,) = dataset[1]
    position = dataset.positions[0]
    np.testing.assert_allclose(sample["GFP"][0].numpy(), 2 * position["0"][1, 1])
    assert dataset.cache_map[1] is True
    dataset.buffer[1] = torch.zeros_like(dataset.buffer[1])
    assert (dataset[1][0]["GFP"] == 0).all(), "a cached row is read from the buffer"
    batch = next(iter(dm.train_dataloader()))
    assert batch["Phase3D"].shape == (2, 1, 5, 64, 64)


def test_buffer_size_is_checked(synthetic_plate, tmp_path):
    tensordict = pytest.importorskip("tensordict")
    buffer = tensordict.MemoryMappedTensor.empty((3, 1, 5, 64, 64), dtype=torch.float32, filename=str(tmp_path / "b"))
    with open_ome_zarr(synthetic_plate.store_path) as plate:
        with pytest.raises(ValueError, match="3 rows for 4 FOV time points"):
            MmappedDataset([plate["A/1/0"]], ["GFP"], {}, buffer)


def test_stores_with_one_name_get_their_own_cache(plate_factory, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    first, second = plate_factory(fovs_per_well=1, n_frames=1), plate_factory(fovs_per_well=1, n_frames=1, seed=3)
    assert _module(first, None).cache_dir != _module(second, None).cache_dir


def test_mmapped_and_cached_datasets_share_indexing_and_norm_meta(synthetic_plate, tmp_path):
    tensordict = pytest.importorskip("tensordict")
    buffer = tensordict.MemoryMappedTensor.empty((8, 1, 5, 64, 64), dtype=torch.float32, filename=str(tmp_path / "b"))
    seen = []

    def record(sample):
        seen.append(sample["norm_meta"]["GFP"]["timepoint_statistics"]["mean"].item())
        return sample

    with open_ome_zarr(synthetic_plate.store_path) as plate:
        positions = [plate["A/1/0"], plate["B/2/1"]]
        mmapped = MmappedDataset(positions, ["GFP"], {}, buffer, preprocess_transforms=record)
        cached = CachedOmeZarrDataset(positions, ["GFP"], {})
        assert isinstance(mmapped, FOVVolumeDataset)
        assert len(mmapped) == len(cached) == 8
        for index in (0, 5):
            (from_mmap,), (from_cache,) = mmapped[index], cached[index]
            torch.testing.assert_close(from_mmap["GFP"], from_cache["GFP"])
            assert "norm_meta" not in from_mmap, "norm_meta goes to preprocess_transforms only"
            assert seen[-1] == from_cache["norm_meta"]["GFP"]["timepoint_statistics"]["mean"].item()


def test_setup_sets_both_datasets_explicitly(synthetic_plate, tmp_path):
    dm = _module(synthetic_plate, tmp_path, seed=3)
    dm.setup("fit")
    assert {"train_dataset", "val_dataset"} <= set(vars(dm))
    assert dm.train_dataset.buffer.filename.endswith("train.mmap")
    assert dm.val_dataset.buffer.filename.endswith("val.mmap")
    train, val = dm._split_fit_positions("fit")
    assert [fov_name(p) for p in dm.train_dataset.positions] == [fov_name(p) for p in train]
    assert [fov_name(p) for p in dm.val_dataset.positions] == [fov_name(p) for p in val]
