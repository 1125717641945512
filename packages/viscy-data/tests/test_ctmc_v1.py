import pytest
import torch

from viscy_data.ctmc_v1 import CTMCv1DataModule
from viscy_data.synthetic import write_synthetic_plate


@pytest.fixture(scope="module")
def ctmc_stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctmc")
    kwargs = {"channel_names": ("DIC",), "fovs_per_well": 1, "n_frames": 6, "z_slices": 1, "yx_size": (32, 32)}
    train = write_synthetic_plate(
        root / "train" / "plate.zarr", well_conditions={"A/1": "mock", "A/2": "mock"}, **kwargs
    )
    val = write_synthetic_plate(root / "val" / "plate.zarr", well_conditions={"B/1": "mock"}, seed=9, **kwargs)
    return train, val


def _module(stores, **kwargs):
    train, val = stores
    settings = {"batch_size": 4, "num_workers": 0, "val_subsample_ratio": 2, "pin_memory": False}
    settings.update(kwargs)
    return CTMCv1DataModule(train.store_path, val.store_path, [], [], [], [], **settings)


def test_fit_loaders_and_subsampled_validation(ctmc_stores):
    dm = _module(ctmc_stores)
    dm.setup("fit")
    assert len(dm.train_dataset) == 12
    assert len(dm.val_dataset) == 3  # every 2nd of 6 time points
    batch = next(iter(dm.train_dataloader()))
    assert batch["DIC"].shape == (4, 1, 1, 32, 32)
    assert "norm_meta" not in batch
    val_batch = next(iter(dm.val_dataloader()))
    assert val_batch["DIC"].shape == (3, 1, 1, 32, 32)


def test_train_and_val_do_not_read_each_others_volumes(ctmc_stores):
    dm = _module(ctmc_stores)
    dm.setup("fit")
    train_item = dm.train_dataset[0][0]["DIC"]
    val_item = dm.val_dataset[0][0]["DIC"]
    assert not torch.equal(train_item, val_item)
    assert dm.train_dataset.cache_map is not dm.val_dataset.dataset.cache_map


def test_prefetch_factor_is_set_and_stage_checked(ctmc_stores):
    assert _module(ctmc_stores, num_workers=2, prefetch_factor=3).prefetch_factor == 3
    assert _module(ctmc_stores).prefetch_factor is None
    with pytest.raises(NotImplementedError, match="only fit"):
        _module(ctmc_stores).setup("validate")
    with pytest.raises(ValueError, match="channels"):
        _module(ctmc_stores, channel_name="Phase3D")
