import numpy as np
import pytest
import torch

from viscy_data.ome_compat import open_ome_zarr
from viscy_data.segmentation import SegmentationDataModule, SegmentationDataset
from viscy_data.synthetic import write_synthetic_plate


@pytest.fixture(scope="module")
def plates(tmp_path_factory):
    root = tmp_path_factory.mktemp("segmentation")
    kwargs = {"fovs_per_well": 1, "n_frames": 2, "z_slices": 2, "yx_size": (32, 32), "dtype": "uint16"}
    pred = write_synthetic_plate(root / "pred" / "plate.zarr", channel_names=("labels",), **kwargs)
    target = write_synthetic_plate(root / "target" / "plate.zarr", channel_names=("GFP", "nuclei"), seed=1, **kwargs)
    return pred, target


def test_items_pair_fovs_and_times(plates):
    pred, target = plates
    dm = SegmentationDataModule(
        pred.store_path, target.store_path, "labels", "nuclei", 1, 0, batch_size=2, num_workers=0
    )
    dm.setup("test")
    assert len(dm.test_dataset) == 4 * 2
    batch = next(iter(dm.test_dataloader()))
    assert batch["pred"].shape == (2, 32, 32)
    assert batch["pred"].dtype == torch.int16
    assert batch["time_idx"].tolist() == [0, 1]
    with open_ome_zarr(target.store_path) as store:
        np.testing.assert_array_equal(batch["target"][1].numpy(), store["A/1/0"]["0"][1, 1, 0].astype(np.int16))
    with pytest.raises(NotImplementedError, match="only test"):
        dm.setup("fit")


def test_mismatches_are_reported(plates, plate_factory):
    pred, target = plates
    other = plate_factory(fovs_per_well=1, n_frames=3, z_slices=2, yx_size=(32, 32))
    with open_ome_zarr(pred.store_path) as p, open_ome_zarr(other.store_path) as t:
        with pytest.raises(ValueError, match="2 predicted time points but 3 targets"):
            SegmentationDataset(p, t, "labels", "GFP", 0, 0)
        with pytest.raises(ValueError, match=r"\['nope'\] not found"):
            SegmentationDataset(p, t, "nope", "GFP", 0, 0)
    with pytest.raises(FileNotFoundError):
        SegmentationDataModule(pred.store_path / "missing", target.store_path, "labels", "GFP", 0, 0, 1, 0)
