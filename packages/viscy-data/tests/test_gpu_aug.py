import numpy as np
import pytest
import torch

from viscy_data.gpu_aug import CachedOmeZarrDataModule, CachedOmeZarrDataset, FOVVolumeDataModule, FOVVolumeDataset
from viscy_data.ome_compat import fov_name, open_ome_zarr


def _module(plate, **kwargs):
    settings = {
        "channels": ["Phase3D", "GFP"],
        "batch_size": 3,
        "num_workers": 0,
        "split_ratio": 0.75,
        "train_cpu_transforms": [],
        "val_cpu_transforms": [],
        "train_gpu_transforms": [lambda batch: {**batch, "stage": "train"}],
        "val_gpu_transforms": [lambda batch: {**batch, "stage": "val"}],
        "pin_memory": False,
    }
    settings.update(kwargs)
    return CachedOmeZarrDataModule(plate.store_path, **settings)


def test_items_cache_and_norm_meta(synthetic_plate):
    with open_ome_zarr(synthetic_plate.store_path) as plate:
        positions = [plate["A/1/0"], plate["B/2/1"]]
        cache = {}
        dataset = CachedOmeZarrDataset(positions, ["GFP", "Phase3D"], cache)
        assert len(dataset) == 2 * 4
        (sample,) = dataset[5]  # B/2/1, t=1
        assert sample["GFP"].shape == (1, 5, 64, 64)
        np.testing.assert_array_equal(sample["Phase3D"][0].numpy(), plate["B/2/1"]["0"][1, 0])
        expected = dict(plate["B/2/1"].zattrs)["normalization"]["GFP"]["timepoint_statistics"]["1"]["mean"]
        assert sample["norm_meta"]["GFP"]["timepoint_statistics"]["mean"].item() == pytest.approx(expected)
        assert len(cache) == 1
        key = next(iter(cache))
        cache[key] = torch.full_like(cache[key], 3.0)
        assert (dataset[5][0]["GFP"] == 3.0).all(), "second read comes from the cache"
        assert (CachedOmeZarrDataset(positions, ["GFP"], cache, skip_cache=True)[5][0]["GFP"] != 3.0).any()


def test_train_and_val_never_share_cache_entries(synthetic_plate):
    with open_ome_zarr(synthetic_plate.store_path) as plate:
        shared = {}
        train = CachedOmeZarrDataset([plate["A/1/0"]], ["GFP"], shared)
        val = CachedOmeZarrDataset([plate["B/1/0"]], ["GFP"], shared)
        train_first = train[0][0]["GFP"]
        val_first = val[0][0]["GFP"]
        assert not torch.equal(train_first, val_first)
        np.testing.assert_array_equal(val_first[0].numpy(), plate["B/1/0"]["0"][0, 1])
        assert len(shared) == 2


def test_datamodule_split_exclude_and_gpu_transforms(synthetic_plate, stage_trainer):
    dm = _module(synthetic_plate, include_wells=["A/1", "A/2"], exclude_fovs=["A/2/1"])
    dm.setup("fit")
    train = {fov_name(p) for p in dm.train_dataset.positions}
    val = {fov_name(p) for p in dm.val_dataset.positions}
    assert train | val == {"A/1/0", "A/1/1", "A/2/0"}
    assert train.isdisjoint(val)
    assert dm.train_dataset.cache_map is not dm.val_dataset.cache_map
    batch = next(iter(dm.train_dataloader()))
    assert batch["Phase3D"].shape == (3, 1, 5, 64, 64)
    assert batch["norm_meta"]["GFP"]["dataset_statistics"]["mean"].shape == (3,)
    assert dm.on_after_batch_transfer(batch, 0)["stage"] == "train"
    dm.trainer = stage_trainer("validate")
    assert dm.on_after_batch_transfer(batch, 0)["stage"] == "val"


def test_gpu_augmentations_follow_the_seed(synthetic_plate, monkeypatch):
    """Same seed, same GPU augmentations, whatever torch's global RNG held at construction; other rank, others."""
    from monai.transforms import RandGaussianNoised

    def augmented(seed: int, torch_seed: int, rank: int = 0) -> torch.Tensor:
        monkeypatch.setattr("viscy_data.seeding.current_rank", lambda: rank)
        torch.manual_seed(torch_seed)
        noise = RandGaussianNoised(keys=["Phase3D", "GFP"], prob=1.0, std=1.0)
        dm = _module(synthetic_plate, train_gpu_transforms=[noise], seed=seed)
        batch = {"Phase3D": torch.zeros(3, 1, 5, 8, 8), "GFP": torch.zeros(3, 1, 5, 8, 8)}
        return dm.on_after_batch_transfer(batch, 0)["GFP"]

    first = augmented(seed=0, torch_seed=1)
    assert first.abs().sum() > 0
    torch.testing.assert_close(augmented(seed=0, torch_seed=2), first, rtol=0, atol=0)
    assert not torch.equal(augmented(seed=0, torch_seed=1, rank=1), first)
    assert not torch.equal(augmented(seed=5, torch_seed=1), first)


def test_datamodule_only_fits_and_checks_channels(synthetic_plate):
    with pytest.raises(NotImplementedError, match="'predict'"):
        _module(synthetic_plate).setup("predict")
    with pytest.raises(ValueError, match=r"the data has channels \['Phase3D', 'GFP'\]"):
        _module(synthetic_plate, channels=["DIC"])


def test_prefetch_factor_with_workers(synthetic_plate):
    dm = _module(synthetic_plate, num_workers=1, prefetch_factor=2)
    dm.setup("fit")
    loader = dm.val_dataloader()
    assert loader.prefetch_factor == 2
    assert loader.persistent_workers


def test_datasets_are_explicit_attributes_of_one_base(synthetic_plate):
    dm = _module(synthetic_plate, seed=3)
    assert isinstance(dm, FOVVolumeDataModule)
    dm.setup("validate")
    assert {"train_dataset", "val_dataset"} <= set(vars(dm))
    assert isinstance(dm.train_dataset, FOVVolumeDataset)
    train, val = dm._split_fit_positions("fit")
    assert [fov_name(p) for p in dm.train_dataset.positions] == [fov_name(p) for p in train]
    assert [fov_name(p) for p in dm.val_dataset.positions] == [fov_name(p) for p in val]


def test_prefetch_factor_is_none_without_workers(synthetic_plate):
    assert _module(synthetic_plate, prefetch_factor=2).prefetch_factor is None


def test_base_dataset_indexes_reads_and_attaches_norm_meta(synthetic_plate):
    with open_ome_zarr(synthetic_plate.store_path) as plate:
        positions = [plate["A/1/0"], plate["B/2/1"]]
        dataset = FOVVolumeDataset(positions, ["GFP"])
        assert len(dataset) == 8
        volume = dataset._read_volume(5)  # B/2/1, t=1
        np.testing.assert_array_equal(volume[0].numpy(), plate["B/2/1"]["0"][1, 1])
        sample = dataset._sample(5, volume)
        expected = dict(plate["B/2/1"].zattrs)["normalization"]["GFP"]["timepoint_statistics"]["1"]["mean"]
        assert sample["norm_meta"]["GFP"]["timepoint_statistics"]["mean"].item() == pytest.approx(expected)
        assert "norm_meta" not in dataset._sample(5, volume, with_norm_meta=False)
        assert "norm_meta" not in FOVVolumeDataset(positions, ["GFP"], load_normalization_metadata=False)._sample(
            5, volume
        )
        with pytest.raises(ValueError, match="CachedOmeZarrDataset needs at least one position"):
            CachedOmeZarrDataset([], ["GFP"], {})
