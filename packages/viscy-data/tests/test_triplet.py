import copy
import logging
import pickle
import re
import tempfile

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("tensorstore")

from viscy_data._typing import INDEX_COLUMNS
from viscy_data.ome_compat import array_store_path, fov_name, open_ome_zarr
from viscy_data.read_errors import ArrayReadError
from viscy_data.synthetic import write_synthetic_plate
from viscy_data.triplet import TripletDataModule, TripletDataset

CHANNELS = ["Phase3D", "GFP"]


def _module(plate, **kwargs):
    settings = {
        "source_channel": CHANNELS,
        "z_range": (1, 6),
        "initial_yx_patch_size": (32, 32),
        "final_yx_patch_size": (24, 24),
        "batch_size": 4,
        "num_workers": 0,
        "split_ratio": 0.5,
        "time_interval": 1,
    }
    settings.update(kwargs)
    return TripletDataModule(plate.store_path, plate.tracks_path, **settings)


def _dataset(plate, fovs=None, tables=None, **kwargs):
    store = open_ome_zarr(plate.store_path, layout="hcs")
    fovs = fovs or plate.fov_names
    positions = [store[name] for name in fovs]
    tables = tables or [pd.read_csv(plate.tracks_csv(name)) for name in fovs]
    settings = {"channel_names": CHANNELS, "initial_yx_patch_size": (32, 32), "z_range": slice(1, 6)}
    settings.update(kwargs)
    return TripletDataset(positions, tables, **settings)


@pytest.fixture(scope="module")
def corrupted_plate(tmp_path_factory):
    """Two FOVs whose time point 2 (channel 0) has a truncated chunk."""
    plate = write_synthetic_plate(
        tmp_path_factory.mktemp("corrupted") / "plate.zarr",
        well_conditions={"A/1": "uninfected", "B/1": "infected"},
        fovs_per_well=1,
        cells_per_fov=6,
        seed=2,
    )
    for name in plate.fov_names:
        plate.corrupt_chunk(name, t=2)
    return plate


def _read_error_pattern(plate):
    fovs = "|".join(plate.fov_names)
    return re.escape("time point 2 of array '0' of FOV '") + f"({fovs})" + re.escape(f"' in store '{plate.store_path}'")


def _raw_patch(plate, fov, t, y, x, z_range=(1, 6), half=16):
    with open_ome_zarr(plate.store_path) as store:
        return store[fov]["0"][t, :, z_range[0] : z_range[1], y - half : y + half, x - half : x + half]


def test_fit_split_batches_and_transfer(tracking_plate):
    dm = _module(tracking_plate)
    dm.setup("fit")
    train = {fov_name(p) for p in dm.train_dataset.positions}
    val = {fov_name(p) for p in dm.val_dataset.positions}
    assert train.isdisjoint(val)
    assert train | val == set(tracking_plate.fov_names)
    batch = next(iter(dm.train_dataloader()))
    patch_keys = {f"{k}{s}" for k in ("anchor", "positive", "negative") for s in ("", "_norm_meta")}
    assert set(batch) == patch_keys | {"lineage"}
    assert batch["lineage"].dtype == torch.int64
    for key in ("anchor", "positive", "negative"):
        assert batch[key].shape == (4, 2, 5, 24, 24)  # without augmentations only the final patch is read
        assert batch[key].dtype == torch.float32
        statistics = batch[f"{key}_norm_meta"]["Phase3D"]["timepoint_statistics"]
        assert statistics["mean"].shape == (4,)  # collated on the host: one tensor per statistic
    out = dm.on_after_batch_transfer(batch, 0)
    assert set(out) == {"anchor", "positive", "negative", "lineage"}
    assert out["anchor"].shape == (4, 2, 5, 24, 24)
    assert len(list(dm.val_dataloader())) == -(-len(dm.val_dataset) // 4)


def test_lineage_codes_name_the_anchors_tracks_one_to_one(tracking_plate):
    dataset = _dataset(tracking_plate, time_interval=1)
    indices = list(range(len(dataset)))
    lineage = dataset.__getitems__(indices)["lineage"].tolist()
    tracks = dataset.valid_anchors["global_track_id"].tolist()
    pairs = set(zip(lineage, tracks, strict=True))
    assert len(pairs) == len(set(lineage)) == len(set(tracks)) > 1


def test_without_spatial_augmentation_only_the_final_patch_is_read_and_batches_are_unchanged(tracking_plate, caplog):
    """Reading 24x24 instead of 32x32: the same cells, and bit for bit the final patches of the full read."""
    with caplog.at_level(logging.INFO, logger="viscy_data.triplet"):
        dm = _module(tracking_plate, seed=4)
    assert dm.read_yx_patch_size == (24, 24)
    assert "Reading (24, 24) around each cell instead of initial_yx_patch_size (32, 32)" in caplog.text
    dm.setup("fit")
    full = _dataset(tracking_plate, fovs=[fov_name(p) for p in dm.train_dataset.positions], seed=4, time_interval=1)
    columns = [column for column in full.valid_anchors if column != "position"]  # iohub objects, not values
    pd.testing.assert_frame_equal(dm.train_dataset.valid_anchors[columns], full.valid_anchors[columns])  # 32x32 rule
    indices = list(range(0, len(full), 3))
    out = dm.on_after_batch_transfer(dm.train_dataset.__getitems__(indices), 0)
    expected = full.__getitems__(indices)
    for key in ("anchor", "positive", "negative"):
        assert torch.equal(out[key], expected[key][..., 4:28, 4:28])
    with pytest.raises(ValueError, match=r"read_yx_patch_size \(40, 40\) exceeds initial_yx_patch_size"):
        _dataset(tracking_plate, read_yx_patch_size=(40, 40))


def test_border_filtering(tracking_plate):
    dataset = _dataset(tracking_plate, fit=False)
    tracks = tracking_plate.read_tracks()
    inside = tracks["y"].between(17, 96 - 17) & tracks["x"].between(17, 96 - 17)
    assert len(dataset) == int(inside.sum()) < len(tracks)
    assert dataset.tracks["y"].between(17, 79).all()
    assert dataset.tracks["x"].between(17, 79).all()


def test_anchors_and_positives_follow_time_interval(tracking_plate):
    dataset = _dataset(tracking_plate, time_interval=2, return_negative=False)
    assert len(dataset) > 0
    indices = list(range(0, len(dataset), max(1, len(dataset) // 5)))[:5]
    batch = dataset.__getitems__(indices)
    anchors = dataset.valid_anchors.iloc[indices]
    for i, (_, anchor) in enumerate(anchors.iterrows()):
        track = dataset.tracks[dataset.tracks["global_track_id"] == anchor["global_track_id"]]
        positive = track[track["t"] == anchor["t"] + 2]
        assert len(positive) == 1
        positive = positive.iloc[0]
        expected_anchor = _raw_patch(tracking_plate, anchor["fov_name"], anchor["t"], anchor["y"], anchor["x"])
        expected_positive = _raw_patch(
            tracking_plate, positive["fov_name"], positive["t"], positive["y"], positive["x"]
        )
        np.testing.assert_array_equal(batch["anchor"][i].numpy(), expected_anchor)
        np.testing.assert_array_equal(batch["positive"][i].numpy(), expected_positive)


def _gapped_tables():
    rows = {"track_id": [0, 0, 0, 1, 1, 1], "t": [0, 1, 3, 0, 2, 4]}
    table = pd.DataFrame(rows).assign(id=range(6), parent_track_id=-1, parent_id=-1, y=48, x=48)
    return [table]


@pytest.mark.parametrize(
    ("time_interval", "fit", "expected"),
    [
        (1, True, {(0, 0)}),
        (2, True, {(0, 1), (1, 0), (1, 2)}),
        ("any", True, {(0, 0), (0, 1), (0, 3), (1, 0), (1, 2), (1, 4)}),
        (1, False, {(0, 0), (0, 1), (0, 3), (1, 0), (1, 2), (1, 4)}),
    ],
)
def test_anchor_filter_with_gaps(tracking_plate, time_interval, fit, expected):
    dataset = _dataset(tracking_plate, ["A/1/0"], _gapped_tables(), time_interval=time_interval, fit=fit)
    assert set(zip(dataset.valid_anchors["track_id"], dataset.valid_anchors["t"], strict=True)) == expected


def test_anchors_without_positive_are_counted_in_a_warning(tracking_plate, caplog):
    """The reference dropped them silently."""
    with caplog.at_level(logging.WARNING, logger="viscy_data.triplet"):
        dataset = _dataset(tracking_plate, ["A/1/0"], _gapped_tables(), time_interval=2)
    assert len(dataset) == 3
    assert (
        "Dropped 3 of 6 anchors (kept 3) without a positive: their track has no row at t + time_interval (t + 2)"
        in caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="viscy_data.triplet"):
        _dataset(tracking_plate, ["A/1/0"], _gapped_tables(), time_interval=2, fit=False)
        _dataset(tracking_plate, ["A/1/0"], _gapped_tables(), time_interval="any")
    assert "anchors" not in caplog.text


def test_dropped_cells_are_counted_by_reason(tracking_plate, caplog):
    table = _gapped_tables()[0]
    table.loc[0, "y"] = 3
    table.loc[[4, 5], "t"] = [6, 99]
    with caplog.at_level(logging.WARNING, logger="viscy_data.triplet"):
        dataset = _dataset(tracking_plate, ["A/1/0"], [table], time_interval="any")
    assert len(dataset) == 3
    assert (
        "Dropped 3 of 6 tracked cells (kept 3): 1 whose (32, 32) patch crosses the image border, "
        "2 whose t is outside the frames of their FOV" in caplog.text
    )


def test_predict_cells_not_found_are_counted_in_a_warning(tracking_plate, caplog):
    dataset = _dataset(tracking_plate, fit=False)
    track = int(dataset.tracks.query("fov_name == 'A/1/1'")["track_id"].iloc[0])
    with caplog.at_level(logging.WARNING, logger="viscy_data.triplet"):
        _dataset(
            tracking_plate,
            fit=False,
            predict_cells=True,
            include_fov_names=["A/1/1", "A/1/1"],
            include_track_ids=[track, 999],
        )
    assert "1 of 2 cells of include_fov_names/include_track_ids have no tracked rows" in caplog.text


def test_any_interval_positive_is_anchor_copy(tracking_plate):
    batch = _dataset(tracking_plate, time_interval="any", return_negative=False).__getitems__([0, 1])
    torch.testing.assert_close(batch["positive"], batch["anchor"])
    assert batch["positive"].data_ptr() != batch["anchor"].data_ptr()


def test_negatives_other_track_seeded(tracking_plate):
    dataset = _dataset(tracking_plate, time_interval=1, seed=4)
    indices = list(range(min(12, len(dataset))))
    rows = dataset._anchor_rows[indices]
    negatives = dataset._sample_negatives(rows, indices)
    assert (dataset._row_track[negatives] != dataset._row_track[rows]).all()
    has_later = np.isin(dataset._row_t[rows] + 1, dataset._row_t)
    np.testing.assert_array_equal(dataset._row_t[negatives][has_later], dataset._row_t[rows][has_later] + 1)
    np.testing.assert_array_equal(negatives, dataset._sample_negatives(rows, indices))
    other_seed = _dataset(tracking_plate, time_interval=1, seed=5)
    assert not np.array_equal(negatives, other_seed._sample_negatives(rows, indices))
    first = dataset.__getitems__(indices)
    again = dataset.__getitems__(indices)
    torch.testing.assert_close(first["negative"], again["negative"])


def test_single_track_has_no_negatives(tracking_plate):
    table = _gapped_tables()[0].query("track_id == 0")
    dataset = _dataset(tracking_plate, ["A/1/0"], [table], time_interval="any")
    with pytest.raises(ValueError, match="at least two tracks"):
        dataset.__getitems__([0])


def test_predict_index_in_tracks_order(tracking_plate):
    dm = _module(tracking_plate, batch_size=5)
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert set(batch) == {"anchor", "anchor_norm_meta", "index"}
    first_rows = tracking_plate.read_tracks().query("fov_name == 'A/1/0' and 16 < y < 80 and 16 < x < 80").head(5)
    assert [row["id"] for row in batch["index"]] == first_rows["id"].tolist()
    assert list(batch["index"][0]) == INDEX_COLUMNS
    assert isinstance(batch["index"][0]["fov_name"], str)
    dm.setup("predict")
    assert len(dm.predict_dataset) == len(dm.predict_dataset.tracks)


def test_predict_cells(tracking_plate):
    dm = _module(tracking_plate, predict_cells=True, include_fov_names=["A/1/1", "B/1/0"], include_track_ids=[1, 2])
    dm.setup("predict")
    pairs = set(zip(dm.predict_dataset.tracks["fov_name"], dm.predict_dataset.tracks["track_id"], strict=True))
    assert pairs <= {("A/1/1", 1), ("B/1/0", 2)}
    assert len(pairs) >= 1


def test_include_wells_and_exclude_fovs(tracking_plate):
    dm = _module(tracking_plate, fit_include_wells=["B/1"])
    dm.setup("fit")
    fovs = {fov_name(p) for p in dm.train_dataset.positions + dm.val_dataset.positions}
    assert fovs == {"B/1/0", "B/1/1"}
    dm = _module(tracking_plate, fit_exclude_fovs=["A/1/0", "B/1/1"], split_ratio=0.5)
    dm.setup("fit")
    assert {fov_name(p) for p in dm.train_dataset.positions + dm.val_dataset.positions} == {"A/1/1", "B/1/0"}
    with pytest.raises(ValueError, match="At least 2 FOVs"):
        _module(tracking_plate, fit_include_wells=["B/1"], fit_exclude_fovs=["B/1/1"]).setup("fit")


def test_normalization_after_transfer_uses_each_fov(tracking_plate, zscore):
    dm = _module(tracking_plate, normalizations=[zscore(CHANNELS, level="fov_statistics")], return_negative=False)
    dm.setup("fit")
    dataset = dm.val_dataset
    indices = [0, len(dataset) - 1]
    batch = dm.on_after_batch_transfer(dataset.__getitems__(indices), 0)
    with open_ome_zarr(tracking_plate.store_path) as store:
        for i, (_, row) in enumerate(dataset.valid_anchors.iloc[indices].iterrows()):
            raw = _raw_patch(tracking_plate, row["fov_name"], row["t"], row["y"], row["x"])[:, :, 4:28, 4:28]
            meta = dict(store[row["fov_name"]].zattrs)["normalization"]
            for c, channel in enumerate(CHANNELS):
                stats = meta[channel]["fov_statistics"]
                expected = (raw[c] - stats["mean"]) / stats["std"]
                np.testing.assert_allclose(batch["anchor"][i, c].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_augmentation_choice(tracking_plate, stage_trainer):
    def add_hundred(sample):
        return {**sample, "GFP": sample["GFP"] + 100}

    dm = _module(tracking_plate, time_interval="any", augmentations=[add_hundred], return_negative=False)
    dm.setup("fit")
    raw = dm.train_dataset.__getitems__([0, 1])
    out = dm.on_after_batch_transfer({k: (v.clone() if torch.is_tensor(v) else v) for k, v in raw.items()}, 0)
    torch.testing.assert_close(out["positive"][:, 1], out["anchor"][:, 1] + 100)
    dm.augment_validation = False
    dm.trainer = stage_trainer("validate")
    out = dm.on_after_batch_transfer({k: (v.clone() if torch.is_tensor(v) else v) for k, v in raw.items()}, 0)
    torch.testing.assert_close(out["positive"], out["anchor"])


def test_augmentations_after_transfer_follow_the_seed(tracking_plate, monkeypatch):
    """Same seed, same augmentations, whatever torch's global RNG held when the module was built; other rank, others."""
    from monai.transforms import RandGaussianNoised

    def augmented(seed: int, torch_seed: int, rank: int = 0) -> torch.Tensor:
        monkeypatch.setattr("viscy_data.seeding.current_rank", lambda: rank)
        torch.manual_seed(torch_seed)
        noise = RandGaussianNoised(keys=CHANNELS, prob=1.0, std=1.0)
        dm = _module(tracking_plate, augmentations=[noise], return_negative=False, seed=seed)
        dm.setup("fit")
        batch = dm.train_dataset.__getitems__([0, 1, 2, 3])
        return dm.on_after_batch_transfer(batch, 0)["positive"]

    first = augmented(seed=0, torch_seed=1)
    torch.testing.assert_close(augmented(seed=0, torch_seed=2), first, rtol=0, atol=0)
    assert not torch.equal(augmented(seed=0, torch_seed=1, rank=1), first)
    assert not torch.equal(augmented(seed=5, torch_seed=1), first)


def test_plate_without_normalization(plate_without_norm, zscore):
    dm = TripletDataModule(
        plate_without_norm.store_path,
        plate_without_norm.tracks_path,
        CHANNELS,
        z_range=(0, 5),
        initial_yx_patch_size=(16, 16),
        final_yx_patch_size=(16, 16),
        batch_size=2,
        num_workers=0,
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["anchor_norm_meta"] is None
    assert dm.on_after_batch_transfer(batch, 0)["anchor"].shape == (2, 2, 5, 16, 16)


def test_tables_are_not_modified(tracking_plate):
    tables = [pd.read_csv(tracking_plate.tracks_csv(name)) for name in tracking_plate.fov_names]
    copies = [table.copy() for table in tables]
    _dataset(tracking_plate, tables=tables)
    for table, unchanged in zip(tables, copies, strict=True):
        pd.testing.assert_frame_equal(table, unchanged)


def test_missing_column_lists_columns_found(tracking_plate, tmp_path):
    table = pd.read_csv(tracking_plate.tracks_csv("A/1/0")).drop(columns=["parent_id"])
    with pytest.raises(ValueError, match=r"lacks columns \['parent_id'\]; columns present: \['track_id', 't', 'id'"):
        _dataset(tracking_plate, ["A/1/0"], [table])
    tracks = tmp_path / "tracks"
    for name in tracking_plate.fov_names:
        (tracks / name).mkdir(parents=True)
        pd.read_csv(tracking_plate.tracks_csv(name)).drop(columns=["x"]).to_csv(tracks / name / "t.csv", index=False)
    dm = TripletDataModule(tracking_plate.store_path, tracks, CHANNELS, z_range=(0, 3), num_workers=0)
    with pytest.raises(ValueError, match=r"lacks columns \['x'\]; columns present"):
        dm.setup("fit")


def test_tracks_csvs_one_per_fov(tracking_plate, tmp_path):
    """A FOV directory with two CSVs is refused naming both (which one is meant would be a guess); none: not found."""
    tracks = tmp_path / "tracks"
    for name in tracking_plate.fov_names:
        (tracks / name).mkdir(parents=True)
        (tracks / name / "tracks.csv").write_bytes(tracking_plate.tracks_csv(name).read_bytes())
    (tracks / "B/1/0" / "old.csv").write_bytes(tracking_plate.tracks_csv("B/1/0").read_bytes())
    dm = TripletDataModule(tracking_plate.store_path, tracks, CHANNELS, z_range=(0, 3), num_workers=0)
    with pytest.raises(ValueError, match=r"FOV B/1/0: 2 tracks CSVs in .*\['old.csv', 'tracks.csv'\]\); keep"):
        dm.setup("fit")
    for csv in (tracks / "B/1/0").glob("*.csv"):
        csv.unlink()
    with pytest.raises(FileNotFoundError, match=r"FOV B/1/0: no tracks CSV in "):
        dm.setup("fit")


def test_bad_channel_and_z_range(tracking_plate):
    with pytest.raises(ValueError, match=r"\['DAPI'\] not found; the data has channels \['Phase3D', 'GFP'\]"):
        _module(tracking_plate, source_channel=["Phase3D", "DAPI"])
    with pytest.raises(ValueError, match=re.escape("z_range (0, 8) does not fit the 7 Z slices of FOV A/1/0; use")):
        _dataset(tracking_plate, z_range=slice(0, 8))


@pytest.mark.parametrize("z_range", [[1, 9], (2, 9), (0, 8), (-1, 3), (4, 4), (5, 2)])
def test_z_range_error_names_z_range_and_the_valid_range(tracking_plate, z_range):
    """The reference blamed z_window_size, which the user did not set, for z_range [1, 9] on 7 slices."""
    expected = (
        f"z_range {tuple(z_range)} does not fit the 7 Z slices of {tracking_plate.store_path}; "
        "use [start, stop) with 0 <= start < stop <= 7."
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        _module(tracking_plate, z_range=z_range)


def test_z_window_size_must_fit_z_range(tracking_plate):
    with pytest.raises(
        ValueError, match=re.escape("z_window_size 5 does not fit z_range (1, 4); use 1 <= z_window_size <= 3.")
    ):
        _module(tracking_plate, z_range=(1, 4), z_window_size=5)
    assert _module(tracking_plate, z_range=(1, 4), z_window_size=2).z_window_size == 2


def test_stores_keyed_by_store_path_and_fov(plate_factory):
    first, second = plate_factory(fovs_per_well=1, seed=0), plate_factory(fovs_per_well=1, seed=1)
    store_a, store_b = open_ome_zarr(first.store_path), open_ome_zarr(second.store_path)
    positions = [store_a["A/1/0"], store_b["A/1/0"]]
    tables = [pd.read_csv(first.tracks_csv("A/1/0")), pd.read_csv(second.tracks_csv("A/1/0"))]
    dataset = TripletDataset(positions, tables, CHANNELS, (16, 16), slice(0, 5), fit=False)
    n_first = int((dataset.tracks["_position_index"] == 0).sum())
    batch = dataset.__getitems__([0, n_first])
    for i, (plate, row) in enumerate(zip((first, second), dataset.tracks.iloc[[0, n_first]].itertuples(), strict=True)):
        expected = _raw_patch(plate, "A/1/0", row.t, row.y, row.x, z_range=(0, 5), half=8)
        np.testing.assert_array_equal(batch["anchor"][i].numpy(), expected)
    assert dataset._reader._store(0) is not dataset._reader._store(1)


def test_reads_both_zarr_formats(versioned_plate):
    dataset = _dataset(versioned_plate, z_range=slice(0, 5), fit=False)
    row = dataset.tracks.iloc[0]
    patch = dataset[0]["anchor"][0]
    expected = _raw_patch(versioned_plate, row["fov_name"], row["t"], row["y"], row["x"], z_range=(0, 5))
    np.testing.assert_array_equal(patch.numpy(), expected)


def test_pickled_dataset_reopens_stores(tracking_plate):
    dataset = _dataset(tracking_plate, time_interval=1)
    before = dataset.__getitems__([0, 1])
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._reader._store(0) is not dataset._reader._store(0)
    torch.testing.assert_close(clone.__getitems__([0, 1])["anchor"], before["anchor"])


def test_caching_reads_the_local_copy(tracking_plate, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dm = _module(tracking_plate, caching=True)
    dm.prepare_data()
    dm.setup("fit")
    assert all(
        array_store_path(p["0"]).is_relative_to(tmp_path.resolve())
        for p in dm.train_dataset.positions + dm.val_dataset.positions
    )
    dm.setup("predict")
    assert array_store_path(dm.predict_dataset.positions[0]["0"]).is_relative_to(tracking_plate.store_path.resolve())


def test_persistent_workers_default_is_accepted_silently_and_true_refused(tracking_plate, recwarn):
    dm = _module(tracking_plate, num_workers=1, persistent_workers=False)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["anchor"].shape[0] == 4
    assert not recwarn.list
    with pytest.raises(ValueError, match=r"reads batches in threads .* leave persistent_workers false"):
        _module(tracking_plate, num_workers=1, persistent_workers=True)


def test_test_stage_unsupported(tracking_plate):
    with pytest.raises(NotImplementedError, match="does not support testing"):
        _module(tracking_plate).setup("test")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_transforms_after_transfer_run_on_the_gpu(tracking_plate, zscore):
    from lightning.pytorch.utilities import move_data_to_device

    dm = _module(tracking_plate, normalizations=[zscore(CHANNELS)], return_negative=False)
    dm.setup("fit")
    batch = dm.val_dataset.__getitems__([0, 1, 2])
    on_cpu = dm.on_after_batch_transfer({**batch}, 0)
    on_gpu = dm.on_after_batch_transfer(move_data_to_device(batch, torch.device("cuda")), 0)
    assert on_gpu["anchor"].is_cuda
    torch.testing.assert_close(on_gpu["anchor"].cpu(), on_cpu["anchor"])


@pytest.mark.parametrize("stage", ["fit", "validate", "predict"])
def test_read_error_stops_every_loader_naming_store_fov_and_time_point(corrupted_plate, stage):
    """The reference's thread buffer swallowed the error: the epoch ended early and the run exited 0."""
    dm = _module(corrupted_plate, z_range=(0, 5), num_workers=2, batch_size=3)
    dm.setup("predict" if stage == "predict" else "fit")
    loader = {"fit": dm.train_dataloader, "validate": dm.val_dataloader, "predict": dm.predict_dataloader}[stage]()
    assert isinstance(loader, torch.utils.data.DataLoader)
    with pytest.raises(ArrayReadError, match=_read_error_pattern(corrupted_plate)) as error:
        for _ in loader:
            pass
    assert "Invalid blosc-compressed data" in str(error.value.__cause__)


def test_read_error_fails_trainer_predict(corrupted_plate):
    from lightning.pytorch import LightningModule, Trainer

    class MeanEmbedding(LightningModule):
        def predict_step(self, batch, batch_idx):
            return batch["anchor"].mean(dim=(2, 3, 4))

    dm = _module(corrupted_plate, z_range=(0, 5), num_workers=1, batch_size=4)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ArrayReadError, match=_read_error_pattern(corrupted_plate)):
        trainer.predict(MeanEmbedding(), datamodule=dm)


def test_batches_transformed_without_a_trainer_draw_new_augmentations_reproducibly(tracking_plate):
    """Regression: without a trainer every batch was seeded as batch 0, so a loop augmented every batch alike."""
    from monai.transforms import RandGaussianNoised

    def two_batches() -> list[torch.Tensor]:
        noise = RandGaussianNoised(keys=CHANNELS, prob=1.0, std=1.0)
        dm = _module(tracking_plate, augmentations=[noise], return_negative=False, seed=0)
        dm.setup("fit")
        raw = dm.train_dataset.__getitems__([0, 1, 2, 3])
        return [dm.on_after_batch_transfer(copy.deepcopy(raw), 0)["positive"] for _ in range(2)]

    first, second = two_batches()
    assert not torch.equal(first, second)
    again = two_batches()
    torch.testing.assert_close(again[0], first, rtol=0, atol=0)
    torch.testing.assert_close(again[1], second, rtol=0, atol=0)


def test_a_batch_held_by_the_consumer_is_not_rewritten_by_later_reads(tracking_plate):
    """Batches are read into reused arrays (PatchBuffers): never one that a held batch still uses."""
    dm = _module(tracking_plate, num_workers=2, batch_size=2, time_interval="any")
    dm.setup("fit")
    batches = iter(dm.train_dataloader())
    held = next(batches)
    expected = {key: held[key].clone() for key in ("anchor", "positive", "negative")}
    later = [next(batches)["anchor"].sum() for _ in range(4)]  # each later batch dropped at once
    assert len(later) == 4
    for key, value in expected.items():
        assert torch.equal(held[key], value)
    assert torch.equal(held["positive"], held["anchor"])  # "any": the positive is a copy of the anchor
    assert held["positive"].data_ptr() != held["anchor"].data_ptr()
