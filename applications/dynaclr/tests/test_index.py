"""MultiExperimentIndex: lineages, border clamping, valid anchors, columns, FOV selection, errors and summary."""

from __future__ import annotations

import logging
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dynaclr.experiment import ExperimentConfig, ExperimentRegistry
from dynaclr.index import MultiExperimentIndex
from viscy_data.synthetic import SyntheticPlate, write_synthetic_plate

WELLS = {"uninfected": ["A/1"], "infected": ["B/1"], "mock": ["C/1"]}
CONDITION_OF_WELL = {well: condition for condition, wells in WELLS.items() for well in wells}
PLATES = {
    "exp_a": {"channels": ["Phase3D", "GFP"], "minutes": 30.0},
    "exp_b": {"channels": ["Phase3D", "RFP"], "minutes": 15.0},
    "exp_c": {"channels": ["Phase3D", "GFP"], "minutes": 20.0},
}
SIZE = 64
Z_SLICES = 4
N_FRAMES = 8
CSV_COLUMNS = ["track_id", "t", "id", "parent_track_id", "parent_id", "z", "y", "x"]


@pytest.fixture(scope="module")
def plates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SyntheticPlate]:
    """Three tiny plates (wells A/1, B/1, C/1, one FOV each) with different channels and frame intervals."""
    root = tmp_path_factory.mktemp("index_plates")
    return {
        name: write_synthetic_plate(
            root / name / "plate.zarr",
            tracks_path=root / name / "tracks",
            channel_names=plate["channels"],
            well_conditions=CONDITION_OF_WELL,
            interval_minutes=plate["minutes"],
            fovs_per_well=1,
            n_frames=N_FRAMES,
            z_slices=Z_SLICES,
            yx_size=(SIZE, SIZE),
            cells_per_fov=3,
            division_probability=0.2,
            seed=seed,
        )
        for seed, (name, plate) in enumerate(PLATES.items())
    }


def experiment(
    plates: dict[str, SyntheticPlate], name: str, tracks_path: Path | None = None, **overrides
) -> ExperimentConfig:
    plate = plates[name]
    settings = {
        "name": name,
        "data_path": str(plate.store_path),
        "tracks_path": str(plate.tracks_path if tracks_path is None else tracks_path),
        "channel_names": list(plate.channel_names),
        "condition_wells": WELLS,
        "interval_minutes": plate.interval_minutes,
    }
    return ExperimentConfig(**{**settings, **overrides})


def build(experiments: list[ExperimentConfig], training_channels=None, **kwargs) -> MultiExperimentIndex:
    kwargs = {"z_range": (0, Z_SLICES), "yx_patch_size": (16, 16), **kwargs}
    return MultiExperimentIndex(ExperimentRegistry(experiments, training_channels=training_channels), **kwargs)


def track(track_id: int, frames, parent=-1, y: float = 32.0, x: float = 32.0) -> list[dict]:
    """Rows of one track present at ``frames``."""
    return [{"track_id": track_id, "t": int(t), "parent_track_id": parent, "y": y, "x": x} for t in frames]


def write_tracks(root: Path, fovs: dict[str, list[dict]]) -> Path:
    """Write one Ultrack-style tracks CSV per FOV under ``root`` and return ``root``."""
    for fov, rows in fovs.items():
        table = pd.DataFrame(rows)
        table["id"] = np.arange(1, len(table) + 1)
        table["parent_id"] = -1
        table["z"] = 1
        directory = root / fov
        directory.mkdir(parents=True, exist_ok=True)
        table[CSV_COLUMNS].to_csv(directory / "tracks.csv", index=False)
    return root


def keys(frame: pd.DataFrame, *columns: str) -> list[tuple]:
    """The rows of ``frame`` as tuples of ``columns`` (categoricals as str)."""
    return list(
        zip(
            *(frame[column].astype(str) if column == "experiment" else frame[column] for column in columns), strict=True
        )
    )


def lineages(index: MultiExperimentIndex) -> dict[int, set[str]]:
    return {int(key): set(values) for key, values in index.tracks.groupby("track_id")["lineage_id"]}


# Lineage


def test_lineage_follows_division_to_the_root(plates, tmp_path):
    """Parent, daughters and granddaughter share the root's global_track_id; unknown or absent parents make roots."""
    a_rows = [
        *track(1, range(0, 3)),
        *track(2, range(3, 5), parent=1),
        *track(3, range(3, 6), parent=1),
        *track(6, [5], parent=2),
        *track(4, range(6), parent=99),
        *track(5, range(6), parent=7),  # 7 is no track of A/1/0
    ]
    b_rows = [*track(7, range(3), parent=1), *track(8, range(3), parent=None)]  # 1 lives in A/1/0 only; NaN parent
    tracks_path = write_tracks(tmp_path, {"A/1/0": a_rows, "B/1/0": b_rows})
    index = build([experiment(plates, "exp_a", tracks_path)], include_wells=["A/1", "B/1"], tau_range_hours=(0.5, 1.0))
    tracks = index.tracks
    prefixes = tracks["experiment"].astype(str) + "_" + tracks["fov_name"] + "_"
    assert (tracks["global_track_id"] == prefixes + tracks["track_id"].astype(str)).all()
    of_a = index.tracks[index.tracks["fov_name"] == "A/1/0"]
    by_track = {int(key): set(values) for key, values in of_a.groupby("track_id")["lineage_id"]}
    root = "exp_a_A/1/0_1"
    assert by_track == {1: {root}, 2: {root}, 3: {root}, 6: {root}, 4: {"exp_a_A/1/0_4"}, 5: {"exp_a_A/1/0_5"}}
    of_b = index.tracks[index.tracks["fov_name"] == "B/1/0"]
    assert dict(zip(of_b["track_id"], of_b["lineage_id"], strict=True)) == {7: "exp_a_B/1/0_7", 8: "exp_a_B/1/0_8"}
    # Tau range (1, 2) frames: the parent's last frame t=2 is an anchor only through its daughters at t=3, 4.
    anchors = set(keys(index.valid_anchors, "fov_name", "track_id", "t"))
    assert ("A/1/0", 1, 2) in anchors
    assert ("A/1/0", 3, 5) not in anchors
    assert ("A/1/0", 6, 5) not in anchors
    assert ("A/1/0", 2, 4) in anchors  # its sister and niece are at t=5
    assert ("B/1/0", 7, 2) not in anchors  # no link to A/1/0's track 1


@pytest.mark.parametrize("cycle", [[1, 2], [1, 2, 3], [1, 2, 3, 4], [1]], ids=["two", "three", "four", "self"])
def test_parent_cycle_gives_own_lineages_and_warns(plates, tmp_path, caplog, cycle):
    """Tracks whose parent links form a cycle (any length) each become their own lineage, with a warning."""
    rows = [track_row for i, tid in enumerate(cycle) for track_row in track(tid, range(3), parent=cycle[i - 1])]
    rows += [*track(10, range(2)), *track(11, range(2, 4), parent=10)]
    tracks_path = write_tracks(tmp_path, {"A/1/0": rows})
    result: dict[str, MultiExperimentIndex] = {}

    def construct() -> None:
        result["index"] = build([experiment(plates, "exp_a", tracks_path)], include_wells=["A/1"])

    with caplog.at_level(logging.WARNING, logger="dynaclr.index"):
        worker = threading.Thread(target=construct, daemon=True)
        worker.start()
        worker.join(timeout=60)
    assert not worker.is_alive(), "MultiExperimentIndex did not finish on a parent cycle"
    index = result["index"]
    expected = {tid: {f"exp_a_A/1/0_{tid}"} for tid in cycle}
    assert lineages(index) == {**expected, 10: {"exp_a_A/1/0_10"}, 11: {"exp_a_A/1/0_10"}}
    assert f"Parent links of {len(cycle)} tracks form cycles" in caplog.text


def test_no_cycle_warning_for_clean_lineages(plates, tmp_path, caplog):
    """Division without cycles logs no cycle warning."""
    tracks_path = write_tracks(tmp_path, {"A/1/0": [*track(1, range(2)), *track(2, range(2, 4), parent=1)]})
    with caplog.at_level(logging.WARNING, logger="dynaclr.index"):
        index = build([experiment(plates, "exp_a", tracks_path)], include_wells=["A/1"])
    assert lineages(index) == {1: {"exp_a_A/1/0_1"}, 2: {"exp_a_A/1/0_1"}}
    assert "cycles" not in caplog.text


# Border clamping

BORDER_ROWS = {  # track_id: (y, x, y_clamp, x_clamp, shift) with a 16x16 patch in a 64x64 image; None: outside
    1: (5.7, 32.0, 8, 32, 3),
    2: (60.0, 62.5, 56, 56, 6),  # x shift 6
    3: (32.0, 4.0, 32, 8, 4),
    4: (-1.0, 32.0, None, None, None),  # outside
    5: (32.0, 64.0, None, None, None),  # outside (x == width)
    6: (3.0, 32.0, 8, 32, 5),  # y shift 5
    7: (32.9, 40.2, 32, 40, 0),  # unchanged
    8: (63.5, 0.0, 56, 8, 8),  # inside, shift 7 and 8
    9: (59.0, 58.9, 56, 56, 3),  # shift 3 both ways
}


@pytest.fixture
def border_tracks(tmp_path) -> Path:
    rows = [row for tid, (y, x, *_) in BORDER_ROWS.items() for row in track(tid, range(2), y=y, x=x)]
    return write_tracks(tmp_path, {"A/1/0": rows})


def test_border_rows_clamped_inward_and_only_outside_ones_dropped(plates, border_tracks, caplog):
    """By default (CELL-03) every centre inside the image is kept and moved inward to [h//2, H - h//2]."""
    with caplog.at_level(logging.WARNING, logger="dynaclr.index"):
        index = build([experiment(plates, "exp_a", border_tracks)], include_wells=["A/1"])
    assert index.max_border_shift is None
    kept = {tid: values for tid, values in BORDER_ROWS.items() if values[2] is not None}
    tracks = index.tracks
    assert sorted(set(tracks["track_id"])) == sorted(kept)
    for tid, (y, x, y_clamp, x_clamp, _) in kept.items():
        rows = tracks[tracks["track_id"] == tid]
        assert len(rows) == 2
        assert keys(rows, "y", "x", "y_clamp", "x_clamp") == [(y, x, y_clamp, x_clamp)] * 2
    assert tracks["y_clamp"].between(8, SIZE - 8).all()
    assert tracks["x_clamp"].between(8, SIZE - 8).all()
    assert "Dropped 4 observations with centres outside their image ('exp_a': 4)" in caplog.text
    assert "max_border_shift" not in caplog.text


def test_cell_at_the_corner_is_kept_with_its_centre_clamped(plates, tmp_path, caplog):
    """Regression (CELL-03): a cell at (0, 0) with a 64x64 patch was dropped by a default shift limit of 16."""
    tracks_path = write_tracks(tmp_path, {"A/1/0": track(1, range(3), y=0.0, x=0.0)})
    with caplog.at_level(logging.WARNING, logger="dynaclr.index"):
        index = build([experiment(plates, "exp_a", tracks_path)], include_wells=["A/1"], yx_patch_size=(64, 64))
    assert keys(index.tracks, "y", "x", "y_clamp", "x_clamp") == [(0.0, 0.0, 32, 32)] * 3
    assert len(index.valid_anchors) == 2  # t = 0 and 1 have a positive
    assert "Dropped" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="dynaclr.index"), pytest.raises(ValueError, match="No observation"):
        build(
            [experiment(plates, "exp_a", tracks_path)],
            include_wells=["A/1"],
            yx_patch_size=(64, 64),
            max_border_shift=16,
        )
    assert (
        "Dropped 3 observations with patch centres more than max_border_shift=16 pixels from the image border "
        "('exp_a': 3)" in caplog.text
    )


@pytest.mark.parametrize("max_border_shift", [0, 3, 4, 7])
def test_max_border_shift_opts_into_a_drop_threshold(plates, border_tracks, caplog, max_border_shift):
    """An explicit max_border_shift keeps exactly the rows whose centre moves at most that far, and counts the rest."""
    with caplog.at_level(logging.WARNING, logger="dynaclr.index"):
        index = build(
            [experiment(plates, "exp_a", border_tracks)], include_wells=["A/1"], max_border_shift=max_border_shift
        )
    inside = {tid: shift for tid, (*_, shift) in BORDER_ROWS.items() if shift is not None}
    kept = {tid for tid, shift in inside.items() if shift <= max_border_shift}
    assert set(index.tracks["track_id"]) == kept
    moved = np.maximum(
        np.abs(index.tracks["y_clamp"] - np.floor(index.tracks["y"])),
        np.abs(index.tracks["x_clamp"] - np.floor(index.tracks["x"])),
    )
    assert (moved <= max_border_shift).all()
    dropped = 2 * (len(inside) - len(kept))
    assert (
        f"Dropped {dropped} observations with patch centres more than max_border_shift={max_border_shift} pixels "
        f"from the image border ('exp_a': {dropped})" in caplog.text
    )


@pytest.mark.parametrize("patch", [(16, 16), (12, 24), (30, 8)])
def test_patches_of_any_shape_clamp_to_their_half(plates, patch):
    """Patches with odd or unequal sizes clamp their centres to [half, size - half] on each axis."""
    index = build([experiment(plates, "exp_a")], yx_patch_size=patch)
    half_y, half_x = patch[0] // 2, patch[1] // 2
    assert index.tracks["y_clamp"].between(half_y, SIZE - half_y).all()
    assert index.tracks["x_clamp"].between(half_x, SIZE - half_x).all()


def test_negative_max_border_shift_is_refused(plates):
    """max_border_shift < 0 raises."""
    with pytest.raises(ValueError, match="max_border_shift must be >= 0 or None \\(no limit\\), got -1"):
        build([experiment(plates, "exp_a")], max_border_shift=-1)


# Valid anchors


def random_tracks(rng: np.random.Generator, n_tracks: int) -> list[dict]:
    """Tracks with gaps, random parents among earlier tracks (acyclic) and parents that do not exist."""
    ids = np.sort(rng.choice(np.arange(1, 3 * n_tracks), size=n_tracks, replace=False))
    absent = np.setdiff1d(np.arange(1, 3 * n_tracks + 5), ids)
    rows = []
    for position, tid in enumerate(ids.tolist()):
        kind = rng.random()
        if position == 0 or kind < 0.35:
            parent = -1
        elif kind < 0.85:
            parent = int(ids[rng.integers(position)])
        else:
            parent = int(rng.choice(absent))
        frames = np.flatnonzero(rng.random(N_FRAMES) < 0.5)
        if not len(frames):
            frames = [int(rng.integers(N_FRAMES))]
        rows += track(tid, frames, parent=parent, y=float(rng.uniform(8, 56)), x=float(rng.uniform(8, 56)))
    return rows


def brute_force_anchors(
    tables: dict[tuple[str, str], list[dict]], frames: dict[str, tuple[int, int]]
) -> tuple[set, dict]:
    """Valid anchors and lineage of every row, by walking parent links in plain Python."""
    lineage_of = {}
    observed = set()
    for (name, fov), rows in tables.items():
        parents = {row["track_id"]: row["parent_track_id"] for row in rows}

        def root(tid, parents=parents):
            while parents[tid] in parents:
                tid = parents[tid]
            return tid

        for row in rows:
            lineage_of[(name, fov, row["track_id"], row["t"])] = f"{name}_{fov}_{root(row['track_id'])}"
    for (name, _, _, t), lineage in lineage_of.items():
        observed.add((name, lineage, t))
    anchors = set()
    for (name, fov, tid, t), lineage in lineage_of.items():
        low, high = frames[name]
        if any((name, lineage, t + tau) in observed for tau in range(low, high + 1) if tau != 0):
            anchors.add((name, fov, tid, t))
    return anchors, lineage_of


@pytest.mark.parametrize("tau_range_hours", [(0.5, 1.5), (-1.0, 1.0), (0.0, 0.75)])
@pytest.mark.parametrize("seed", [0, 1])
def test_valid_anchors_match_brute_force(plates, tmp_path, tau_range_hours, seed):
    """An anchor is valid iff its lineage has a row tau frames later, tau != 0 in its experiment's tau range."""
    rng = np.random.default_rng(seed)
    experiments, tables = [], {}
    for name in PLATES:
        fovs = {f"{well}/0": random_tracks(rng, 12) for well in CONDITION_OF_WELL}
        experiments.append(experiment(plates, name, write_tracks(tmp_path / name, fovs)))
        tables.update({(name, fov): rows for fov, rows in fovs.items()})
    index = build(experiments, tau_range_hours=tau_range_hours)
    frames = {name: index.registry.tau_range_frames(name, tau_range_hours) for name in PLATES}
    if tau_range_hours == (0.5, 1.5):
        assert frames == {"exp_a": (1, 3), "exp_b": (2, 6), "exp_c": (2, 4)}
    expected, lineage_of = brute_force_anchors(tables, frames)
    assert len(index.tracks) == sum(len(rows) for rows in tables.values())
    tracks = index.tracks
    rows = keys(tracks, "experiment", "fov_name", "track_id", "t")
    assert list(tracks["lineage_id"]) == [lineage_of[row] for row in rows]
    anchors = index.valid_anchors
    found = keys(anchors, "experiment", "fov_name", "track_id", "t")
    assert len(found) == len(set(found))
    assert set(found) == expected
    assert 0 < len(expected) < len(tracks)
    pd.testing.assert_index_equal(anchors.index, pd.RangeIndex(len(anchors)), exact=True)
    pd.testing.assert_index_equal(tracks.index, pd.RangeIndex(len(tracks)), exact=True)
    pd.testing.assert_frame_equal(tracks.iloc[index.anchor_rows].reset_index(drop=True), anchors)
    assert (np.diff(index.anchor_rows) > 0).all()


def test_synthetic_divisions_give_anchors_through_daughters(plates):
    """On the generator's own tracks, every anchor has a same-lineage row 1..4 frames later, and parents' ends count."""
    index = build([experiment(plates, "exp_a")], tau_range_hours=(0.5, 2.0))
    tracks = index.tracks
    observed = set(keys(tracks, "lineage_id", "t"))
    valid = {
        row for row in keys(tracks, "lineage_id", "t") if any((row[0], row[1] + k) in observed for k in (1, 2, 3, 4))
    }
    assert set(keys(index.valid_anchors, "lineage_id", "t")) == valid
    divided = tracks[tracks["parent_track_id"] >= 0]
    assert len(divided), "the plate should have a division"
    assert (divided["lineage_id"] != divided["global_track_id"]).all()
    parents = tracks[tracks["global_track_id"].isin(set(divided["lineage_id"]))]
    last_frames = parents.groupby("global_track_id")["t"].max()
    anchors = set(keys(index.valid_anchors, "global_track_id", "t"))
    assert any(item in anchors for item in last_frames.items())


# Columns


def test_columns_and_values(plates):
    """experiment, condition, ids, HPI, well, FOV, fluorescence channel; plain values only (no iohub objects)."""
    experiments = [
        experiment(plates, "exp_a", start_hpi=2.5),
        experiment(plates, "exp_b", source_channel=["Phase3D", "RFP"]),
    ]
    index = build(experiments)
    tracks = index.tracks
    expected_columns = {
        "experiment",
        "condition",
        "global_track_id",
        "hours_post_infection",
        "well_name",
        "fov_name",
        "fluorescence_channel",
        "lineage_id",
        "y_clamp",
        "x_clamp",
        *CSV_COLUMNS,
    }
    assert expected_columns <= set(tracks.columns)
    csv = {name: plates[name].read_tracks() for name in ("exp_a", "exp_b")}
    assert len(tracks) == sum(len(table) for table in csv.values())
    for name, start_hpi, minutes, fluorescence in (("exp_a", 2.5, 30.0, "GFP"), ("exp_b", 0.0, 15.0, "RFP")):
        rows = tracks[tracks["experiment"] == name]
        table = csv[name]
        pd.testing.assert_frame_equal(
            rows[["fov_name", *CSV_COLUMNS]].reset_index(drop=True), table, check_dtype=False, check_like=True
        )
        np.testing.assert_allclose(rows["hours_post_infection"], start_hpi + rows["t"] * minutes / 60.0)
        assert (rows["fluorescence_channel"] == fluorescence).all()
        assert (rows["well_name"] == rows["fov_name"].str.rsplit("/", n=1).str[0]).all()
        assert list(rows["condition"].astype(str)) == [CONDITION_OF_WELL[well] for well in rows["well_name"]]
        assert (rows["global_track_id"] == name + "_" + rows["fov_name"] + "_" + rows["track_id"].astype(str)).all()
        assert rows["lineage_id"].str.startswith(name + "_").all()
    for frame in (tracks, index.valid_anchors):
        for column in frame.columns:
            modules = {type(value).__module__.split(".")[0] for value in frame[column].tolist()}
            assert modules <= {"builtins", "numpy"}, f"column {column} holds {modules}"


@pytest.mark.parametrize(
    ("source_channel", "fluorescence"), [(None, "GFP"), (["Phase3D"], ""), (["GFP", "Phase3D"], "Phase3D")]
)
def test_fluorescence_channel_is_the_second_training_channel(plates, source_channel, fluorescence):
    """fluorescence_channel is source_channel[1] (channel_names[1] without it), or "" with one channel."""
    index = build([experiment(plates, "exp_a", source_channel=source_channel)])
    assert set(index.tracks["fluorescence_channel"]) == {fluorescence}


# Selection


@pytest.mark.parametrize(
    ("include_wells", "exclude_fovs", "fovs"),
    [
        (None, None, {"A/1/0", "B/1/0", "C/1/0"}),
        (["B/1"], None, {"B/1/0"}),
        (["/B/1/", "C/1"], None, {"B/1/0", "C/1/0"}),
        (None, ["A/1/0"], {"B/1/0", "C/1/0"}),
        (["A/1", "B/1"], ["B/1/0"], {"A/1/0"}),
    ],
)
def test_include_wells_and_exclude_fovs(plates, include_wells, exclude_fovs, fovs):
    """Only included wells, minus excluded FOVs, are indexed, in every experiment."""
    index = build(
        [experiment(plates, "exp_a"), experiment(plates, "exp_c")],
        include_wells=include_wells,
        exclude_fovs=exclude_fovs,
    )
    assert set(index.tracks["fov_name"]) == fovs
    assert {(fov.experiment, fov.fov_name) for fov in index.fovs} == {(e, f) for e in ("exp_a", "exp_c") for f in fovs}
    assert set(index.tracks["condition"].astype(str)) == {CONDITION_OF_WELL[fov[:3]] for fov in fovs}
    assert len(index.positions) == len(index.fovs)
    assert [index.fovs[i].fov_name for i in index.tracks["fov_index"]] == list(index.tracks["fov_name"])


def test_nothing_selected_raises(plates):
    """include_wells matching no well raises, naming the experiments."""
    with pytest.raises(ValueError, match=r"No FOV selected in experiments \['exp_a'\]"):
        build([experiment(plates, "exp_a")], include_wells=["H/12"])


def test_wells_without_condition_are_skipped_with_a_warning(plates, caplog):
    """A plate well missing from condition_wells is not indexed, and the warning names it."""
    wells = {"uninfected": ["A/1"], "infected": ["B/1"]}
    with caplog.at_level(logging.WARNING, logger="dynaclr.index"):
        index = build([experiment(plates, "exp_a", condition_wells=wells)])
    assert set(index.tracks["fov_name"]) == {"A/1/0", "B/1/0"}
    assert "Experiment 'exp_a': skipped 1 FOVs of wells ['C/1'] that condition_wells does not list." in caplog.text


def test_condition_wells_the_plate_lacks_contribute_no_cells(plates, caplog):
    """Regression: a condition_wells well absent from the plate was refused; it is warned about and adds nothing."""
    wells = {"uninfected": ["A/1", "H/12"], "infected": ["B/1"], "mock": ["C/1"], "late": ["H/11"]}
    with caplog.at_level(logging.WARNING):
        index = build([experiment(plates, "exp_a", condition_wells=wells)])
    assert "Experiment 'exp_a': condition_wells lists wells ['H/12', 'H/11']" in caplog.text
    assert set(index.tracks["fov_name"]) == {"A/1/0", "B/1/0", "C/1/0"}
    assert set(index.tracks["condition"]) == {"uninfected", "infected", "mock"}
    assert len(index.valid_anchors) > 0


@pytest.mark.parametrize("z_range", [slice(1, 3), (1, 3), [1, 3]])
def test_z_range_as_slice_or_pair(plates, z_range):
    """z_range may be a slice or a (start, stop) pair; both become slice(start, stop)."""
    assert build([experiment(plates, "exp_a")], z_range=z_range).z_range == slice(1, 3)


@pytest.mark.parametrize("z_range", [(0, Z_SLICES + 1), (2, 2), (-1, 2)])
def test_z_range_out_of_range_raises(plates, z_range):
    """A z_range not inside the FOV's Z slices raises, naming experiment and FOV."""
    message = (
        rf"Experiment 'exp_a', FOV A/1/0: z_range \[{z_range[0]}, {z_range[1]}\) does not fit its {Z_SLICES} Z slices"
    )
    with pytest.raises(ValueError, match=message):
        build([experiment(plates, "exp_a")], z_range=z_range)


@pytest.mark.parametrize("z_range", [slice(0, 4, 2), slice(None, 2), (0, 1, 2)])
def test_malformed_z_range_raises(plates, z_range):
    """Slices without bounds or with a step, and triples, are refused."""
    with pytest.raises(ValueError, match="z_range must be"):
        build([experiment(plates, "exp_a")], z_range=z_range)


def test_patch_larger_than_the_image_raises(plates):
    """yx_patch_size larger than a FOV's image raises, naming experiment, FOV and the image size."""
    with pytest.raises(ValueError, match=r"'exp_a', FOV A/1/0: yx_patch_size \(16, 66\) exceeds its 64x64 image"):
        build([experiment(plates, "exp_a")], yx_patch_size=(16, 66))
    with pytest.raises(ValueError, match="at least 2 pixels"):
        build([experiment(plates, "exp_a")], yx_patch_size=(1, 16))


# Tracks CSV errors


@pytest.fixture
def copied_tracks(plates, tmp_path) -> Path:
    return Path(shutil.copytree(plates["exp_a"].tracks_path, tmp_path / "tracks"))


def test_missing_tracks_csv_raises(plates, copied_tracks):
    """A selected FOV without a tracks CSV raises FileNotFoundError naming experiment, FOV and directory."""
    (copied_tracks / "B/1/0/tracks.csv").unlink()
    with pytest.raises(FileNotFoundError, match=rf"Experiment 'exp_a', FOV B/1/0: no tracks CSV in {copied_tracks}"):
        build([experiment(plates, "exp_a", copied_tracks)])
    # Excluding that FOV is fine.
    index = build([experiment(plates, "exp_a", copied_tracks)], exclude_fovs=["B/1/0"])
    assert {fov.fov_name for fov in index.fovs} == {"A/1/0", "C/1/0"}


def test_two_csvs_in_one_fov_raise(plates, copied_tracks):
    """Two CSVs in one FOV directory raise ValueError listing both."""
    shutil.copy(copied_tracks / "A/1/0/tracks.csv", copied_tracks / "A/1/0/old.csv")
    with pytest.raises(ValueError, match=r"'exp_a', FOV A/1/0: 2 tracks CSVs in .*\['old.csv', 'tracks.csv'\]"):
        build([experiment(plates, "exp_a", copied_tracks)])


def test_csv_missing_a_column_raises(plates, copied_tracks):
    """A CSV lacking a required column raises ValueError naming it and listing the columns present."""
    path = copied_tracks / "C/1/0/tracks.csv"
    pd.read_csv(path).drop(columns="parent_id").to_csv(path, index=False)
    present = [column for column in CSV_COLUMNS if column != "parent_id"]
    with pytest.raises(
        ValueError, match=r"FOV C/1/0: .*lacks columns \['parent_id'\]; columns present: " + re.escape(str(present))
    ):
        build([experiment(plates, "exp_a", copied_tracks)])


def test_csv_without_z_is_accepted(plates, copied_tracks):
    """z is optional in a tracks CSV."""
    for path in copied_tracks.glob("*/*/*/tracks.csv"):
        pd.read_csv(path).drop(columns="z").to_csv(path, index=False)
    index = build([experiment(plates, "exp_a", copied_tracks)])
    assert "z" not in index.tracks.columns
    assert len(index.tracks) == len(plates["exp_a"].read_tracks())


# Summary and groups


def test_summary_format(plates):
    """summary(): a totals line, then per experiment its observations, anchors and non-empty conditions."""
    index = build(
        [
            experiment(plates, "exp_a"),
            experiment(plates, "exp_b", condition_wells={"uninfected": ["A/1"], "infected": ["B/1"]}),
        ]
    )
    lines = index.summary().splitlines()
    tracks, anchors = index.tracks, index.valid_anchors
    assert lines[0] == (
        f"MultiExperimentIndex: 2 experiments, {len(tracks)} total observations, {len(anchors)} valid anchors"
    )
    assert len(lines) == 3
    for line, name, conditions in zip(
        lines[1:], ("exp_a", "exp_b"), (["uninfected", "infected", "mock"], ["uninfected", "infected"]), strict=True
    ):
        rows = tracks[tracks["experiment"] == name]
        wells = rows["fov_name"].str[:3]
        counts = ", ".join(f"{c}({sum(CONDITION_OF_WELL[w] == c for w in wells)})" for c in conditions)
        n_anchors = int((anchors["experiment"] == name).sum())
        assert line == f"  {name}: {len(rows)} observations, {n_anchors} anchors, conditions: {counts}"
        assert len(rows) > n_anchors > 0


def test_experiment_and_condition_groups(plates):
    """experiment_groups / condition_groups map each name to exactly the positions of its rows in tracks."""
    index = build([experiment(plates, "exp_a"), experiment(plates, "exp_c")])
    for groups, column in ((index.experiment_groups, "experiment"), (index.condition_groups, "condition")):
        values = index.tracks[column].astype(str).to_numpy()
        assert set(groups) == set(values)
        for name, positions in groups.items():
            np.testing.assert_array_equal(np.sort(positions), np.flatnonzero(values == name))
    assert set(index.experiment_groups) == {"exp_a", "exp_c"}
    assert set(index.condition_groups) == {"uninfected", "infected", "mock"}
