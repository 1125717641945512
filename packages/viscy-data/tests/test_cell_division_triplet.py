import numpy as np
import pytest
import torch
from monai.transforms import CenterSpatialCropd, Compose

from viscy_data.cell_division_triplet import CellDivisionTripletDataModule, CellDivisionTripletDataset


@pytest.fixture(scope="module")
def track_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("division")
    rng = np.random.default_rng(0)
    for n, frames in enumerate([5, 6, 4, 5, 7]):
        np.save(root / f"track_{n}.npy", rng.random((frames, 2, 20, 24), dtype=np.float32) + n)
    return root


def _paths(track_dir):
    return sorted(track_dir.glob("*.npy"))


def test_multichannel_transform_per_sample(track_dir):
    crop = Compose([CenterSpatialCropd(keys=["bf", "h2b"], roi_size=(1, 8, 8))])
    dataset = CellDivisionTripletDataset(
        _paths(track_dir), ["bf", "h2b"], anchor_transform=crop, positive_transform=crop, negative_transform=crop
    )
    sample = dataset[0]
    assert sample["anchor"].shape == (2, 1, 8, 8)
    raw = np.load(_paths(track_dir)[0])
    np.testing.assert_array_equal(sample["anchor"][1, 0].numpy(), raw[0, 1, 6:14, 8:16])
    two_d = CellDivisionTripletDataset(_paths(track_dir), ["bf", "h2b"], anchor_transform=crop, output_2d=True)
    assert two_d[0]["anchor"].shape == (2, 8, 8)
    assert CellDivisionTripletDataset(_paths(track_dir), ["BF", "1"]).channel_indices == [0, 1]


def test_anchors_positives_and_negatives(track_dir):
    dataset = CellDivisionTripletDataset(_paths(track_dir), ["h2b"], time_interval=2, seed=1)
    assert len(dataset) == sum(n - 2 for n in (5, 6, 4, 5, 7))
    track, t = dataset.anchors[3]
    sample = dataset[3]
    torch.testing.assert_close(sample["positive"][0, 0], dataset.tracks[track][t + 2, 1])
    negative_track = int(sample["negative"].mean().floor())  # tracks are offset by their number
    assert negative_track != track
    torch.testing.assert_close(dataset[3]["negative"], sample["negative"])
    any_interval = CellDivisionTripletDataset(_paths(track_dir), ["h2b"])
    torch.testing.assert_close(any_interval[0]["positive"], any_interval[0]["anchor"])
    predict = CellDivisionTripletDataset(_paths(track_dir), ["h2b"], fit=False, time_interval=2)
    assert predict[6]["index"] == {"fov_name": "track_1", "id": 1}
    single = CellDivisionTripletDataset(_paths(track_dir)[:1], ["h2b"], time_interval=1)
    assert single[0]["negative"].shape == (1, 1, 20, 24)


def test_bad_channel(track_dir):
    with pytest.raises(ValueError, match="not found in CHANNEL_MAPPING"):
        CellDivisionTripletDataset(_paths(track_dir), ["GFP"])
    with pytest.raises(ValueError, match="the tracks have 2 channels"):
        CellDivisionTripletDataset(_paths(track_dir), ["5"])


def test_datamodule(track_dir, tmp_path):
    dm = CellDivisionTripletDataModule(
        track_dir, ["bf", "h2b"], final_yx_patch_size=(16, 16), batch_size=2, num_workers=0, time_interval=1
    )
    dm.setup("fit")
    assert len(dm.train_dataset.data_paths) == 4
    assert set(dm.train_dataset.data_paths).isdisjoint(dm.val_dataset.data_paths)
    batch = next(iter(dm.train_dataloader()))
    assert batch["anchor"].shape == (2, 2, 1, 16, 16)
    assert batch["negative"].shape == (2, 2, 1, 16, 16)
    dm.setup("predict")
    assert len(dm.predict_dataset) == 27
    with pytest.raises(NotImplementedError):
        dm.setup("test")
    with pytest.raises(ValueError, match=r"No \.npy files found"):
        CellDivisionTripletDataModule(tmp_path, ["bf"])
