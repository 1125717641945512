import logging

import numpy as np
import pandas as pd
import pytest

from viscy_data.normalization import compute_statistics
from viscy_data.ome_compat import SUPPORTED_OME_VERSIONS, array_zarr_format, open_ome_zarr
from viscy_data.synthetic import ANNOTATION_COLUMNS, TRACK_COLUMNS, relocalize, write_synthetic_plate


def _read_all(plate):
    with open_ome_zarr(plate.store_path) as store:
        return {name: store[name]["0"][:] for name in plate.fov_names}


def test_layout_channels_and_shapes(synthetic_plate):
    assert synthetic_plate.fov_names == [f"{w}/{f}" for w in ("A/1", "A/2", "B/1", "B/2") for f in (0, 1)]
    with open_ome_zarr(synthetic_plate.store_path) as store:
        assert list(store.channel_names) == ["Phase3D", "GFP"]
        assert sorted(name for name, _ in store.positions()) == sorted(synthetic_plate.fov_names)
        image = store["A/1/0"]["0"]
        assert image.shape == synthetic_plate.shape == (4, 2, 5, 64, 64)
        assert image.dtype == np.float32


def test_versioned_plate_zarr_format(versioned_plate):
    with open_ome_zarr(versioned_plate.store_path) as store:
        image = store[versioned_plate.fov_names[0]]["0"]
        assert array_zarr_format(image) == {"0.4": 2, "0.5": 3}[versioned_plate.version]
        assert image.shape == versioned_plate.shape


def test_same_seed_same_plate_other_seed_differs(tmp_path, synthetic_plate):
    again = write_synthetic_plate(tmp_path / "again" / "plate.zarr", seed=0)
    other = write_synthetic_plate(tmp_path / "other" / "plate.zarr", seed=1)
    reference, repeated, different = _read_all(synthetic_plate), _read_all(again), _read_all(other)
    for name in synthetic_plate.fov_names:
        np.testing.assert_array_equal(reference[name], repeated[name])
    assert not np.allclose(reference["A/1/0"], different["A/1/0"])
    pd.testing.assert_frame_equal(synthetic_plate.read_tracks(), again.read_tracks())
    assert not synthetic_plate.read_tracks().equals(other.read_tracks())


def test_tracks_csv_layout_and_lineage(synthetic_plate):
    for name in synthetic_plate.fov_names:
        csv = synthetic_plate.tracks_path / name / "tracks.csv"
        table = pd.read_csv(csv)
        assert tuple(table.columns) == TRACK_COLUMNS
        assert table["id"].is_unique
        by_id = table.set_index("id")
        for track_id, track in table.groupby("track_id"):
            times = track["t"].to_numpy()
            np.testing.assert_array_equal(times, np.arange(times[0], times[0] + len(times)))
            first = track.iloc[0]
            # within a track each node points at the previous one
            np.testing.assert_array_equal(track["parent_id"].to_numpy()[1:], track["id"].to_numpy()[:-1])
            assert track["parent_track_id"].nunique() == 1
            if first["parent_track_id"] == -1:
                assert first["parent_id"] == -1
                assert first["t"] == 0
            else:
                parent_node = by_id.loc[first["parent_id"]]
                assert parent_node["track_id"] == first["parent_track_id"]
                assert parent_node["t"] == first["t"] - 1
                parent_track = table[table["track_id"] == first["parent_track_id"]]
                assert parent_track["t"].max() == first["t"] - 1, f"parent of track {track_id} lives on"
    tracks = synthetic_plate.read_tracks()
    daughters = tracks[tracks["parent_track_id"] >= 0].groupby(["fov_name", "track_id"]).size()
    assert len(daughters) >= 2, "the default plate should contain at least one division"
    assert daughters.groupby(level=0).size().min() >= 2  # daughters come in pairs


def test_cells_stay_inside_image(synthetic_plate):
    tracks = synthetic_plate.read_tracks()
    _, _, n_z, height, width = synthetic_plate.shape
    assert tracks["y"].between(5, height - 6).all()
    assert tracks["x"].between(5, width - 6).all()
    assert tracks["z"].between(0, n_z - 1).all()


def test_images_show_cells_and_infection(synthetic_plate):
    images = _read_all(synthetic_plate)
    annotations = synthetic_plate.read_annotations()
    centers_phase, centers_gfp = [], []
    for row in annotations.itertuples():
        centers_phase.append(images[row.fov_name][row.t, 0, :, row.y, row.x].max())
        centers_gfp.append(images[row.fov_name][row.t, 1, :, row.y, row.x].max())
    annotations = annotations.assign(phase=centers_phase, gfp=centers_gfp)
    background = np.median(images["A/1/0"][:, 0])
    assert annotations["phase"].min() > background + 0.2
    infected = annotations[annotations["infection_state"] == 1]
    healthy = annotations[annotations["infection_state"] == 0]
    # a bright nuclear reporter after onset; neighbours may overlap, so compare typical values
    assert infected["gfp"].median() > 2 * healthy["gfp"].median()
    assert (infected["gfp"] > healthy["gfp"].median()).all()


def test_infection_follows_conditions(synthetic_plate):
    annotations = synthetic_plate.read_annotations()
    well = annotations["fov_name"].str.rsplit("/", n=1).str[0]
    condition = well.map(synthetic_plate.well_conditions)
    assert (annotations.loc[condition == "uninfected", "infection_state"] == 0).all()
    infected_rows = annotations[condition == "infected"]
    assert set(infected_rows["infection_state"]) == {0, 1}
    # once infected, a lineage stays infected
    for _, track in infected_rows.groupby(["fov_name", "track_id"]):
        assert np.all(np.diff(track.sort_values("t")["infection_state"].to_numpy()) >= 0)


def test_annotations_match_tracks(synthetic_plate):
    annotations = synthetic_plate.read_annotations()
    assert tuple(annotations.columns) == ANNOTATION_COLUMNS
    tracks = synthetic_plate.read_tracks()
    key = ["fov_name", "id", "track_id", "t", "y", "x"]
    pd.testing.assert_frame_equal(
        annotations[key].sort_values(key).reset_index(drop=True), tracks[key].sort_values(key).reset_index(drop=True)
    )
    mitosis = annotations[annotations["cell_division_state"] == 1]
    daughters_first = tracks[tracks["parent_track_id"] >= 0].groupby(["fov_name", "track_id"])["t"].idxmin()
    assert set(tracks.loc[daughters_first, "id"]) <= set(mitosis["id"])


def test_normalization_metadata_matches_data(synthetic_plate):
    images = _read_all(synthetic_plate)
    with open_ome_zarr(synthetic_plate.store_path) as store:
        plate_meta = dict(store.zattrs)["normalization"]
        for channel_index, channel in enumerate(synthetic_plate.channel_names):
            everything = np.concatenate([images[name][:, channel_index].ravel() for name in images])
            expected = compute_statistics(everything)
            for stat, value in expected.items():
                assert plate_meta[channel]["dataset_statistics"][stat] == pytest.approx(value, rel=1e-5, abs=1e-6)
            at_t2 = compute_statistics(np.concatenate([images[name][2, channel_index].ravel() for name in images]))
            assert plate_meta[channel]["timepoint_statistics"]["2"]["mean"] == pytest.approx(at_t2["mean"], rel=1e-5)
            assert "fov_statistics" not in plate_meta[channel]
            position_meta = dict(store["B/2/1"].zattrs)["normalization"][channel]
            fov = images["B/2/1"][:, channel_index]
            assert position_meta["fov_statistics"]["median"] == pytest.approx(np.median(fov), rel=1e-5)
            assert position_meta["dataset_statistics"] == plate_meta[channel]["dataset_statistics"]
            assert sorted(position_meta["timepoint_statistics"]) == ["0", "1", "2", "3"]
            assert position_meta["timepoint_statistics"]["3"]["std"] == pytest.approx(np.std(fov[3]), rel=1e-4)


def test_refuses_to_overwrite(tmp_path):
    plate = write_synthetic_plate(tmp_path / "plate.zarr", fovs_per_well=1, n_frames=1)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_synthetic_plate(tmp_path / "plate.zarr", fovs_per_well=1, n_frames=1)
    (tmp_path / "other").mkdir()
    with pytest.raises(FileExistsError, match=r"annotations\.csv"):
        write_synthetic_plate(
            tmp_path / "other" / "plate.zarr",
            annotations_path=plate.annotations_path,
            tracks_path=tmp_path / "other" / "tracks",
            fovs_per_well=1,
        )
    assert not (tmp_path / "other" / "plate.zarr").exists()
    again = write_synthetic_plate(tmp_path / "plate.zarr", fovs_per_well=1, n_frames=2, overwrite=True)
    assert again.shape[0] == 2
    assert _read_all(again)["A/1/0"].shape[0] == 2


def test_custom_layout_and_uint16(plate_factory):
    plate = plate_factory(
        channel_names=("Phase3D", "RFP", "H2B"),
        well_conditions={"C/4": "mock", "D/5": "ZIKV"},
        infected_conditions=("ZIKV",),
        fovs_per_well=3,
        n_frames=2,
        z_slices=3,
        yx_size=(32, 48),
        cell_radius=3,
        interval_minutes=90,
        dtype="uint16",
        chunks=(1, 1, 1, 32, 48),
    )
    assert plate.fov_names == ["C/4/0", "C/4/1", "C/4/2", "D/5/0", "D/5/1", "D/5/2"]
    assert plate.hours_post_infection(1) == pytest.approx(1.5)
    with open_ome_zarr(plate.store_path) as store:
        image = store["D/5/2"]["0"]
        assert image.shape == (2, 3, 3, 32, 48)
        assert image.dtype == np.uint16
        assert image.chunks == (1, 1, 1, 32, 48)
    annotations = plate.read_annotations()
    assert annotations.loc[annotations["fov_name"].str.startswith("C/4"), "infection_state"].eq(0).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"well_conditions": {"A1": "x"}}, "'A1' must look like"),
        ({"well_conditions": {}}, "At least one well"),
        ({"channel_names": ("a", "a")}, "unique"),
        ({"dtype": "int8"}, "choose one of"),
        ({"n_frames": 0}, "at least 1"),
        ({"yx_size": (8, 8)}, "too small"),
        ({"version": "0.3"}, "cannot be written"),
        ({"infection_phenotype": "swelling"}, "'brightening', 'relocalization'"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_synthetic_plate(tmp_path / "plate.zarr", **kwargs)
    assert not (tmp_path / "plate.zarr").exists()


@pytest.mark.skipif("0.5" in SUPPORTED_OME_VERSIONS, reason="this iohub writes OME-Zarr 0.5")
def test_v05_unsupported_names_choices(tmp_path):
    with pytest.raises(ValueError, match=r"\['0.4'\]"):
        write_synthetic_plate(tmp_path / "plate.zarr", version="0.5")


def test_corrupt_chunk_breaks_only_that_time_point_and_channel(plate_factory):
    plate = plate_factory(fovs_per_well=1, n_frames=3)
    chunk = plate.corrupt_chunk("A/2/0", t=1, channel=1)
    assert chunk.is_relative_to(plate.store_path / "A/2/0/0")
    with open_ome_zarr(plate.store_path) as store:
        image = store["A/2/0"]["0"]
        image[1, 0]  # the other channel of that time point still reads
        image[2]
        with pytest.raises(RuntimeError, match="blosc decompression"):
            image[1, 1]
    with pytest.raises(FileNotFoundError, match="time point 7"):
        plate.corrupt_chunk("A/2/0", t=7)


def test_writing_a_plate_logs_no_iohub_metadata_warning(tmp_path, caplog):
    # regression: iohub 0.3 warned "Cannot read first position metadata" for every new plate
    with caplog.at_level(logging.WARNING, logger="iohub"):
        plate = write_synthetic_plate(tmp_path / "plate.zarr", seed=0)
    assert not [record.getMessage() for record in caplog.records if record.name.startswith("iohub")]
    with open_ome_zarr(plate.store_path, layout="hcs") as reopened:
        assert [axis.name for axis in reopened.axes] == ["T", "C", "Z", "Y", "X"]


def test_relocalize_keeps_the_values_and_moves_the_brightest_inward():
    rng = np.random.default_rng(0)
    values = rng.random((9, 9))
    yy, xx = np.mgrid[-4:5, -4:5]
    distance = np.hypot(yy, xx)
    np.testing.assert_array_equal(relocalize(values, -distance, 0.0), values)
    moved = [relocalize(values, -distance, level) for level in (0.0, 0.5, 1.0)]
    for image in moved:
        np.testing.assert_array_equal(np.sort(image, axis=None), np.sort(values, axis=None))
    # at level 1 the value ranks follow the distance to the centre
    assert moved[2][4, 4] == values.max()
    by_distance = np.lexsort((-moved[2].ravel(), distance.ravel()))
    assert np.all(np.diff(moved[2].ravel()[by_distance]) <= 0)
    centroid_distance = [float((image * distance).sum() / image.sum()) for image in moved]
    assert centroid_distance[0] > centroid_distance[1] > centroid_distance[2]
    with pytest.raises(ValueError, match=r"level must lie in \[0, 1\]"):
        relocalize(values, -distance, 1.5)
    with pytest.raises(ValueError, match="same shape"):
        relocalize(values, -distance[:3], 0.5)


@pytest.fixture(scope="module")
def relocalization_plate(tmp_path_factory):
    """One cell per FOV (no neighbours, no divisions), in focus at its z, 10 frames of 30 minutes."""
    return write_synthetic_plate(
        tmp_path_factory.mktemp("relocalization") / "plate.zarr",
        well_conditions={"A/1": "uninfected", "B/1": "infected"},
        fovs_per_well=6,
        n_frames=10,
        yx_size=(48, 48),
        cells_per_fov=1,
        division_probability=0.0,
        infection_phenotype="relocalization",
        seed=1,
    )


def _reporter_windows(plate):
    """Per annotation row: the reporter of the cell's 15 x 15 window at its z, background subtracted."""
    background = 0.05
    images = {
        name: np.pad(image[:, 1] - background, ((0, 0), (0, 0), (7, 7), (7, 7)))
        for name, image in _read_all(plate).items()
    }
    annotations = plate.read_annotations()
    windows = [
        images[row.fov_name][row.t, row.z, row.y : row.y + 15, row.x : row.x + 15] for row in annotations.itertuples()
    ]
    return annotations, np.stack(windows)


def test_relocalization_conserves_each_cells_reporter_and_moves_it_to_the_nucleus(relocalization_plate):
    assert relocalization_plate.infection_phenotype == "relocalization"
    annotations, windows = _reporter_windows(relocalization_plate)
    yy, xx = np.mgrid[-7:8, -7:8]
    nucleus = np.hypot(yy, xx) <= 2.5
    annotations = annotations.assign(
        total=windows.sum(axis=(1, 2)),
        p90=np.percentile(windows, 90, axis=(1, 2)),
        nuclear_fraction=windows[:, nucleus].sum(axis=1) / windows.sum(axis=(1, 2)),
    )
    infected_tracks = annotations.groupby("fov_name")["infection_state"].transform("max") == 1
    assert infected_tracks.any()
    assert (~infected_tracks).any()
    for _, track in annotations.groupby("fov_name"):
        # the same cell keeps its total reporter intensity and its intensity distribution; pixel noise
        # (std 0.02 on 225 pixels) makes the totals vary by about 3%
        assert track["total"].std() < 0.08 * track["total"].mean()
        assert track["p90"].std() < 0.1 * track["p90"].mean()
    before = annotations[infected_tracks & (annotations["infection_state"] == 0)]
    after = annotations[infected_tracks & (annotations["infection_state"] == 1)]
    uninfected = annotations[~infected_tracks]
    assert after["total"].mean() == pytest.approx(before["total"].mean(), rel=0.05)
    assert after["nuclear_fraction"].min() > before["nuclear_fraction"].max()
    assert after["nuclear_fraction"].median() > 2 * uninfected["nuclear_fraction"].median()
    # expression differs between cells, so brightness does not tell the state
    totals = annotations.groupby("fov_name")["total"].mean()
    assert totals.max() > 1.3 * totals.min()


def test_relocalization_leaves_the_default_phenotype_plate_unchanged(tmp_path):
    default = write_synthetic_plate(tmp_path / "a" / "plate.zarr", seed=4)
    explicit = write_synthetic_plate(tmp_path / "b" / "plate.zarr", seed=4, infection_phenotype="brightening")
    relocalized = write_synthetic_plate(tmp_path / "c" / "plate.zarr", seed=4, infection_phenotype="relocalization")
    first, second, third = _read_all(default), _read_all(explicit), _read_all(relocalized)
    assert all(np.array_equal(first[name], second[name]) for name in first)
    assert not np.array_equal(first["A/2/0"][:, 1], third["A/2/0"][:, 1])
    assert default.infection_phenotype == "brightening"
