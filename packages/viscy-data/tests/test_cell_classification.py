import numpy as np
import pandas as pd
import pytest
import torch

from viscy_data._typing import INDEX_COLUMNS
from viscy_data.cell_classification import ClassificationDataModule, ClassificationDataset
from viscy_data.ome_compat import open_ome_zarr


def _module(plate, **kwargs):
    settings = {
        "val_fovs": ["A/2/0", "/B/1/1"],
        "channel_name": "GFP",
        "z_range": (1, 4),
        "train_exclude_timepoints": [3],
        "train_transforms": [],
        "val_transforms": [],
        "initial_yx_patch_size": (16, 16),
        "batch_size": 4,
        "num_workers": 0,
    }
    settings.update(kwargs)
    return ClassificationDataModule(plate.store_path, plate.annotations_path, **settings)


def test_fit_split_shapes_and_normalization(synthetic_plate):
    dm = _module(synthetic_plate)
    dm.setup("fit")
    train, val = dm.train_dataset.annotation, dm.val_dataset.annotation
    assert set(val["fov_name"]) == {"A/2/0", "B/1/1"}
    assert not set(train["fov_name"]) & {"A/2/0", "B/1/1"}
    assert 3 not in set(train["t"])
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 1, 3, 16, 16)
    assert labels.shape == (4, 1)
    assert labels.dtype == torch.float32
    image, label = dm.val_dataset[0]
    row = dm.val_dataset.annotation.iloc[0]
    with open_ome_zarr(synthetic_plate.store_path) as plate:
        stats = dict(plate[row["fov_name"]].zattrs)["normalization"]["GFP"]["fov_statistics"]
        raw = plate[row["fov_name"]]["0"][row["t"], 1, 1:4, row["y"] - 8 : row["y"] + 8, row["x"] - 8 : row["x"] + 8]
    np.testing.assert_allclose(image[0].numpy(), (raw - stats["mean"]) / stats["std"], rtol=1e-5, atol=1e-5)
    assert label.item() == row["infection_state"]


def test_predict_uses_label_column_and_returns_indices(synthetic_plate):
    dm = _module(synthetic_plate, label_column="cell_division_state")
    dm.setup("predict")
    _, label, index = dm.predict_dataset[0]
    row = dm.predict_dataset.annotation.iloc[0]
    assert label.item() == row["cell_division_state"]
    assert list(index) == INDEX_COLUMNS
    assert index["fov_name"] == row["fov_name"]
    assert dm.predict_dataset.label_column == "cell_division_state"


def test_string_labels_are_mapped(synthetic_plate):
    annotation = synthetic_plate.read_annotations().head(6)
    annotation["infection_state"] = ["uninfected", "infected"] * 3
    with open_ome_zarr(synthetic_plate.store_path) as plate:
        dataset = ClassificationDataset(plate, annotation, "Phase3D", (0, 2), None, (8, 8))
        assert sorted({dataset[i][1].item() for i in range(len(dataset))}) == [0.0, 1.0]
        annotation["infection_state"] = "sick"
        with pytest.raises(ValueError, match="labels \\['sick'\\]; expected numbers or"):
            ClassificationDataset(plate, annotation, "Phase3D", (0, 2), None, (8, 8))


def test_stages_and_val_fovs(synthetic_plate):
    with pytest.raises(ValueError, match="Unknown stage 'tune'"):
        _module(synthetic_plate).setup("tune")
    with pytest.raises(NotImplementedError):
        _module(synthetic_plate).setup("test")
    dm = _module(synthetic_plate, val_fovs=None)
    dm.setup("fit")
    assert len(dm.val_dataset) == 0
    assert len(dm.train_dataset) > 0
    with pytest.raises(ValueError, match=r"val_fovs \['Z/9/9'\] are not in the plate"):
        _module(synthetic_plate, val_fovs=["Z/9/9"]).setup("fit")


def test_missing_fov_statistics(plate_without_norm):
    with open_ome_zarr(plate_without_norm.store_path) as plate:
        annotation = plate_without_norm.read_annotations()
        with pytest.raises(ValueError, match="has no fov_statistics"):
            ClassificationDataset(plate, annotation, "GFP", (0, 2), None, (8, 8))


def test_bad_annotation_columns_and_z(synthetic_plate, tmp_path):
    annotation = synthetic_plate.read_annotations().drop(columns=["infection_state"])
    with open_ome_zarr(synthetic_plate.store_path) as plate:
        with pytest.raises(ValueError, match=r"lacks columns \['infection_state'\]; columns present"):
            ClassificationDataset(plate, annotation, "GFP", (0, 2), None, (8, 8))
        with pytest.raises(ValueError, match=r"z_range \(2, 7\) does not fit the 5 Z slices of the plate; use \[start"):
            ClassificationDataset(plate, synthetic_plate.read_annotations(), "GFP", (2, 7), None, (8, 8))
    csv = tmp_path / "a.csv"
    pd.DataFrame({"fov_name": ["A/1/0"], "t": [0]}).to_csv(csv, index=False)
    with pytest.raises(ValueError, match="columns present"):
        ClassificationDataModule(synthetic_plate.store_path, csv, None, "GFP", (0, 1), [], [], [], (8, 8), 1, 0).setup(
            "fit"
        )
