"""MultiExperimentTripletDataset: patches, positives through lineage, seeding, channels, predict mode, read errors."""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dynaclr.dataset import PREDICT_INDEX_COLUMNS, MultiExperimentTripletDataset
from dynaclr.experiment import ExperimentConfig, ExperimentRegistry
from dynaclr.index import MultiExperimentIndex
from dynaclr.tau_sampling import tau_probabilities
from viscy_data import FlexibleBatchSampler
from viscy_data.ome_compat import open_ome_zarr
from viscy_data.read_errors import ArrayReadError
from viscy_data.synthetic import SyntheticPlate, write_synthetic_plate
from viscy_data.thread_loader import ThreadedDataLoader

WELLS = {"uninfected": ["A/1"], "infected": ["B/1"]}
CONDITION_OF_WELL = {"A/1": "uninfected", "B/1": "infected"}
SIZE = 64
Z_SLICES = 4
N_FRAMES = 6
PATCH = (16, 16)
CSV_COLUMNS = ["track_id", "t", "id", "parent_track_id", "parent_id", "z", "y", "x"]
PLATES = {
    "exp_a": {"channels": ["Phase3D", "GFP"], "minutes": 30.0, "seed": 0},
    "exp_b": {"channels": ["Phase3D", "RFP"], "minutes": 15.0, "seed": 1},
    "exp_u16": {"channels": ["Phase3D", "GFP"], "minutes": 30.0, "seed": 2, "dtype": "uint16"},
    "steady": {"channels": ["Phase3D", "GFP"], "minutes": 30.0, "seed": 3, "division_probability": 0.0, "n_frames": 8},
}


def _write(root: Path, name: str) -> SyntheticPlate:
    settings = dict(PLATES[name])
    return write_synthetic_plate(
        root / name / "plate.zarr",
        tracks_path=root / name / "tracks",
        annotations_path=root / name / "annotations.csv",
        channel_names=settings.pop("channels"),
        interval_minutes=settings.pop("minutes"),
        well_conditions=CONDITION_OF_WELL,
        fovs_per_well=1,
        n_frames=settings.pop("n_frames", N_FRAMES),
        z_slices=Z_SLICES,
        yx_size=(SIZE, SIZE),
        cells_per_fov=4,
        division_probability=settings.pop("division_probability", 0.25),
        **settings,
    )


@pytest.fixture(scope="module")
def plates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SyntheticPlate]:
    """Read-only plates; exp_a and exp_b share FOV names (A/1/0, B/1/0) but not pixels."""
    root = tmp_path_factory.mktemp("dataset_plates")
    return {name: _write(root, name) for name in PLATES}


def experiment(plates, name: str, tracks_path: Path | None = None, **overrides) -> ExperimentConfig:
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


def make_index(experiments, training_channels=None, **kwargs) -> MultiExperimentIndex:
    kwargs = {"z_range": (0, Z_SLICES), "yx_patch_size": PATCH, "tau_range_hours": (0.5, 1.5), **kwargs}
    return MultiExperimentIndex(ExperimentRegistry(experiments, training_channels=training_channels), **kwargs)


def make_dataset(index: MultiExperimentIndex, **kwargs) -> MultiExperimentTripletDataset:
    return MultiExperimentTripletDataset(index, tau_range_hours=index.tau_range_hours, **kwargs)


@pytest.fixture(scope="module")
def pair_index(plates) -> MultiExperimentIndex:
    """exp_a (30 min/frame) and exp_b (15 min/frame), channels by position."""
    return make_index([experiment(plates, "exp_a"), experiment(plates, "exp_b")])


def write_tracks(root: Path, fovs: dict[str, list[tuple[int, int, int, float, float]]]) -> Path:
    """Tracks CSVs from ``(track_id, t, parent_track_id, y, x)`` rows per FOV."""
    for fov, rows in fovs.items():
        table = pd.DataFrame(rows, columns=["track_id", "t", "parent_track_id", "y", "x"])
        table["id"] = np.arange(1, len(table) + 1)
        table["parent_id"] = -1
        table["z"] = 2
        (root / fov).mkdir(parents=True, exist_ok=True)
        table[CSV_COLUMNS].to_csv(root / fov / "tracks.csv", index=False)
    return root


@functools.cache
def read_array(store_path: str, fov: str) -> np.ndarray:
    """A FOV's whole array "0", read with iohub."""
    with open_ome_zarr(store_path, layout="hcs", mode="r") as plate:
        return np.asarray(plate[fov]["0"][:])


def zarr_channels(config: ExperimentConfig) -> list[int]:
    return [config.channel_names.index(name) for name in config.training_channel_names]


def direct_patch(index: MultiExperimentIndex, row: int, channels: list[int] | None = None) -> np.ndarray:
    """``(C, Z, Y, X)`` patch of a tracks row read with numpy at its clamped centre."""
    cell = index.tracks.iloc[row]
    config = index.registry.get_experiment(str(cell["experiment"]))
    volume = read_array(config.data_path, cell["fov_name"])
    half_y, half_x = index.yx_patch_size[0] // 2, index.yx_patch_size[1] // 2
    y, x = int(cell["y_clamp"]), int(cell["x_clamp"])
    channels = zarr_channels(config) if channels is None else channels
    return volume[int(cell["t"]), channels, index.z_range, y - half_y : y + half_y, x - half_x : x + half_x]


@functools.cache
def _patch_rows(index: MultiExperimentIndex) -> dict[bytes, list[int]]:
    table: dict[bytes, list[int]] = {}
    for row in range(len(index.tracks)):
        table.setdefault(direct_patch(index, row).tobytes(), []).append(row)
    return table


def rows_with_patch(index: MultiExperimentIndex, patch: torch.Tensor) -> list[int]:
    """Tracks rows whose directly read patch equals ``patch`` (several only for cells at one place and time)."""
    rows = _patch_rows(index).get(patch.numpy().tobytes(), [])
    assert rows, "the patch is no tracks row's patch"
    return rows


def matched_rows(index: MultiExperimentIndex, patches: torch.Tensor) -> list[list[int]]:
    return [rows_with_patch(index, patch) for patch in patches]


def zattrs_normalization(config: ExperimentConfig, fov: str) -> dict:
    with open_ome_zarr(config.data_path, layout="hcs", mode="r") as plate:
        return dict(plate[fov].zattrs["normalization"])


# Batches and patch values


@pytest.mark.parametrize(("name", "dtype"), [("exp_a", torch.float32), ("exp_u16", torch.uint16)])
def test_fit_batch_keys_shapes_and_dtype(plates, name, dtype):
    """A fit batch holds anchor/positive patches (B, C, Z, 2*(h//2), 2*(w//2)) in the store's dtype, and norm metas."""
    index = make_index([experiment(plates, name)], z_range=(1, 3), yx_patch_size=(15, 17))
    dataset = make_dataset(index)
    assert len(dataset) == len(index.valid_anchors)
    batch = dataset.__getitems__([0, 3, 1, 2, 4])
    assert set(batch) == {"anchor", "anchor_norm_meta", "positive", "positive_norm_meta", "lineage"}
    assert batch["lineage"].dtype == torch.int64
    assert batch["lineage"].shape == (5,)
    for key in ("anchor", "positive"):
        assert batch[key].shape == (5, 2, 2, 14, 16)
        assert batch[key].dtype == dtype
        assert batch[f"{key}_norm_meta"]["ch_0"]["timepoint_statistics"]["mean"].shape == (5,)
    single = dataset[3]
    assert single["anchor"].shape == (1, 2, 2, 14, 16)
    torch.testing.assert_close(single["anchor"][0], batch["anchor"][1], rtol=0, atol=0)


def test_mixed_dtypes_are_read_as_float32(plates):
    """Experiments stored as float32 and uint16 give float32 batches with the uint16 values cast exactly."""
    index = make_index([experiment(plates, "exp_a"), experiment(plates, "exp_u16")])
    dataset = make_dataset(index)
    positions = np.flatnonzero(index.valid_anchors["experiment"] == "exp_u16")[:6]
    batch = dataset.__getitems__(positions.tolist())
    assert batch["anchor"].dtype == torch.float32
    for patch, row in zip(batch["anchor"], index.anchor_rows[positions], strict=True):
        np.testing.assert_array_equal(patch.numpy(), direct_patch(index, row).astype(np.float32))


def test_anchor_patches_equal_a_direct_zarr_read(plates, pair_index):
    """Anchor patches are array[t, channels, z_range, y_clamp -+ h/2, x_clamp -+ w/2] of the anchor row's FOV."""
    dataset = make_dataset(pair_index)
    indices = list(range(0, len(dataset), 3))
    batch = dataset.__getitems__(indices)
    rows = pair_index.anchor_rows[indices]
    clamped = pair_index.tracks.iloc[rows]
    assert (clamped["y_clamp"] != np.floor(clamped["y"])).any() or (clamped["x_clamp"] != np.floor(clamped["x"])).any()
    for patch, row in zip(batch["anchor"], rows, strict=True):
        np.testing.assert_array_equal(patch.numpy(), direct_patch(pair_index, row))


def test_shared_fov_names_read_from_each_experiments_store(plates, pair_index):
    """exp_a and exp_b both have FOV A/1/0: each experiment's patches come from its own plate."""
    a = read_array(str(plates["exp_a"].store_path), "A/1/0")
    b = read_array(str(plates["exp_b"].store_path), "A/1/0")
    assert not np.array_equal(a, b)
    dataset = make_dataset(pair_index)
    experiments = pair_index.valid_anchors["experiment"].astype(str).to_numpy()
    on_a1 = pair_index.valid_anchors["fov_name"].to_numpy() == "A/1/0"
    for name in ("exp_a", "exp_b", None):  # one experiment after the other, then mixed in one batch
        chosen = on_a1 if name is None else on_a1 & (experiments == name)
        positions = np.flatnonzero(chosen)
        batch = dataset.__getitems__(positions.tolist())
        for patch, row in zip(batch["anchor"], pair_index.anchor_rows[positions], strict=True):
            np.testing.assert_array_equal(patch.numpy(), direct_patch(pair_index, row))


# Positives


def test_positives_share_the_lineage_within_the_tau_range(pair_index):
    """Each positive is a same-lineage row tau frames after its anchor, tau != 0 in the experiment's frame range."""
    dataset = make_dataset(pair_index)
    frames = {name: pair_index.registry.tau_range_frames(name, (0.5, 1.5)) for name in ("exp_a", "exp_b")}
    assert frames == {"exp_a": (1, 3), "exp_b": (2, 6)}
    tracks = pair_index.tracks
    indices = list(range(len(dataset)))
    seen = set()
    for epoch in range(3):
        dataset.set_epoch(epoch)
        batch = dataset.__getitems__(indices)
        # the batch's lineage codes name the anchors' lineages one to one
        anchor_lineages = tracks["lineage_id"].iloc[pair_index.anchor_rows[indices]].tolist()
        pairs = set(zip(batch["lineage"].tolist(), anchor_lineages, strict=True))
        assert len(pairs) == len(set(anchor_lineages)) == batch["lineage"].unique().numel() > 1
        for anchor, candidates in zip(
            pair_index.anchor_rows[indices], matched_rows(pair_index, batch["positive"]), strict=True
        ):
            anchor_cell = tracks.iloc[anchor]
            matches = tracks.iloc[candidates]
            assert matches["t"].nunique() == 1
            assert (matches["experiment"] == anchor_cell["experiment"]).all()
            tau = int(matches["t"].iloc[0]) - int(anchor_cell["t"])
            low, high = frames[str(anchor_cell["experiment"])]
            assert low <= tau <= high
            assert tau != 0
            assert anchor_cell["lineage_id"] in set(matches["lineage_id"])
            seen.add((str(anchor_cell["experiment"]), tau))
    assert {tau for name, tau in seen if name == "exp_a"} == {1, 2, 3}
    assert {2, 3, 4} <= {tau for name, tau in seen if name == "exp_b"}


def test_small_offsets_are_drawn_more_often(plates):
    """With every offset available, tau follows tau_probabilities: 1 frame more often than 2, 2 more than 3."""
    index = make_index([experiment(plates, "steady")])
    dataset = make_dataset(index, tau_decay_rate=2.0)
    tracks = index.tracks
    assert (tracks["parent_track_id"] == -1).all()
    positions = np.flatnonzero(index.valid_anchors["t"] <= 4).tolist()  # t + 1..3 all observed
    counts: Counter[int] = Counter()
    for epoch in range(12):
        dataset.set_epoch(epoch)
        batch = dataset.__getitems__(positions)
        for anchor, candidates in zip(
            index.anchor_rows[positions], matched_rows(index, batch["positive"]), strict=True
        ):
            assert tracks.iloc[anchor]["lineage_id"] in set(tracks.iloc[candidates]["lineage_id"])
            counts[int(tracks.iloc[candidates[0]]["t"]) - int(tracks.iloc[anchor]["t"])] += 1
    total = sum(counts.values())
    assert set(counts) == {1, 2, 3}
    assert counts[1] > counts[2] > counts[3]
    taus, probabilities = tau_probabilities(1, 3, 2.0)
    for tau, probability in zip(taus.tolist(), probabilities, strict=True):
        assert abs(counts[tau] / total - probability) < 0.06, (counts, probabilities)


def test_parent_before_division_gets_a_daughter_as_positive(plates, tmp_path):
    """The parent's last frame before division has its positives among the two daughters."""
    rows = (
        [(1, t, -1, 20.0, 20.0) for t in range(3)]
        + [(2, t, 1, 20.0, 44.0) for t in range(3, 6)]
        + [(3, t, 1, 44.0, 20.0) for t in range(3, 6)]
        + [(4, t, -1, 44.0, 44.0) for t in range(6)]
    )
    tracks_path = write_tracks(tmp_path, {"A/1/0": rows})
    index = make_index([experiment(plates, "exp_a", tracks_path)], include_wells=["A/1"], tau_range_hours=(0.5, 1.0))
    dataset = make_dataset(index)
    anchors = index.valid_anchors
    position = int(np.flatnonzero((anchors["track_id"] == 1) & (anchors["t"] == 2))[0])
    batch = dataset.__getitems__([position] * 48)
    drawn = set()
    for candidates in matched_rows(index, batch["positive"]):
        (row,) = candidates
        drawn.add((int(index.tracks.iloc[row]["track_id"]), int(index.tracks.iloc[row]["t"])))
    assert {track for track, _ in drawn} == {2, 3}
    assert {t for _, t in drawn} == {3, 4}


def test_anchor_without_positive_in_the_dataset_tau_range_raises(plates):
    """A dataset tau range narrower than the index's can leave an anchor without a positive: clear RuntimeError."""
    index = make_index([experiment(plates, "steady")], tau_range_hours=(0.5, 1.5))
    dataset = MultiExperimentTripletDataset(index, tau_range_hours=(5.0, 6.0))
    with pytest.raises(RuntimeError, match=r"No positive for the anchor of experiment 'steady', FOV .*tau_range_hours"):
        dataset.__getitems__([0])


# Determinism


def test_draws_depend_on_seed_epoch_rank_and_indices_only(pair_index):
    """Same (seed, epoch, rank, indices) gives the same batch; another epoch, seed or rank changes the positives."""
    indices = list(range(0, len(pair_index.valid_anchors), 2))
    first = make_dataset(pair_index, seed=7)
    reference = first.__getitems__(indices)
    again = first.__getitems__(indices)
    fresh = make_dataset(pair_index, seed=7).__getitems__(indices)
    for batch in (again, fresh):
        torch.testing.assert_close(batch["anchor"], reference["anchor"], rtol=0, atol=0)
        torch.testing.assert_close(batch["positive"], reference["positive"], rtol=0, atol=0)

    def positives_after(change) -> torch.Tensor:
        dataset = make_dataset(pair_index, seed=7)
        change(dataset)
        batch = dataset.__getitems__(indices)
        torch.testing.assert_close(batch["anchor"], reference["anchor"], rtol=0, atol=0)
        return batch["positive"]

    assert not torch.equal(positives_after(lambda dataset: dataset.set_epoch(1)), reference["positive"])
    assert not torch.equal(positives_after(lambda dataset: setattr(dataset, "rank", 1)), reference["positive"])
    assert not torch.equal(make_dataset(pair_index, seed=8).__getitems__(indices)["positive"], reference["positive"])
    first.set_epoch(1)
    first.__getitems__(indices)
    first.set_epoch(0)
    torch.testing.assert_close(first.__getitems__(indices)["positive"], reference["positive"], rtol=0, atol=0)


# Channels and normalization metadata


def per_sample(norm_meta: dict, n_samples: int) -> list[dict]:
    """Split a batch's ``{channel: {level: {stat: (B,) Tensor}}}`` into one tree per sample."""
    for channel in norm_meta.values():
        for statistics in channel.values():
            for values in statistics.values():
                assert values.shape == (n_samples,)  # one tensor per statistic, collated on the host
    return [
        {
            channel: {level: {stat: values[i] for stat, values in stats.items()} for level, stats in levels.items()}
            for channel, levels in norm_meta.items()
        }
        for i in range(n_samples)
    ]


def test_norm_meta_keyed_by_model_channels_at_the_samples_time_point(pair_index):
    """norm_meta keys are ch_0/ch_1 mapped to each experiment's source channels, at each sample's own t."""
    assert pair_index.registry.active_channels == ["ch_0", "ch_1"]
    dataset = make_dataset(pair_index)
    indices = list(range(0, len(dataset), 2))
    batch = dataset.__getitems__(indices)
    tracks = pair_index.tracks
    positive_rows = [candidates[0] for candidates in matched_rows(pair_index, batch["positive"])]
    for key, rows in (("anchor", pair_index.anchor_rows[indices]), ("positive", positive_rows)):
        for meta, row in zip(per_sample(batch[f"{key}_norm_meta"], len(rows)), rows, strict=True):
            cell = tracks.iloc[row]
            config = pair_index.registry.get_experiment(str(cell["experiment"]))
            stored = zattrs_normalization(config, cell["fov_name"])
            assert list(meta) == ["ch_0", "ch_1"]
            for label, channel in zip(meta, config.training_channel_names, strict=True):
                levels = meta[label]
                assert set(levels) == {"dataset_statistics", "fov_statistics", "timepoint_statistics"}
                expected = {
                    **{level: stored[channel][level] for level in ("dataset_statistics", "fov_statistics")},
                    "timepoint_statistics": stored[channel]["timepoint_statistics"][str(int(cell["t"]))],
                }
                for level, statistics in expected.items():
                    assert {stat: float(value) for stat, value in levels[level].items()} == pytest.approx(
                        statistics, rel=1e-6
                    )
    gfp = zattrs_normalization(pair_index.registry.get_experiment("exp_a"), "A/1/0")["GFP"]["timepoint_statistics"]
    assert gfp["0"]["mean"] != gfp["3"]["mean"]  # time points are told apart


def test_all_channels_zero_fill_a_missing_reporter(plates):
    """training_channels="all": the reporter an experiment lacks is zeros with mean 0 / std 1 statistics."""
    index = make_index([experiment(plates, "exp_a"), experiment(plates, "exp_b")], training_channels="all")
    assert index.registry.active_channels == ["Phase3D", "GFP", "RFP"]
    dataset = make_dataset(index)
    indices = list(range(0, len(dataset), 2))
    batch = dataset.__getitems__(indices)
    rows = index.anchor_rows[indices]
    missing = {"exp_a": "RFP", "exp_b": "GFP"}
    names = set()
    for patch, meta, row in zip(batch["anchor"], per_sample(batch["anchor_norm_meta"], len(rows)), rows, strict=True):
        cell = index.tracks.iloc[row]
        name = str(cell["experiment"])
        names.add(name)
        absent = index.registry.active_channels.index(missing[name])
        present = [channel for channel in range(3) if channel != absent]
        assert not patch[absent].any()
        np.testing.assert_array_equal(patch[present].numpy(), direct_patch(index, row, channels=[0, 1]))
        assert list(meta) == ["Phase3D", "GFP", "RFP"]
        for level, statistics in meta[missing[name]].items():
            assert float(statistics["mean"]) == 0.0, level
            assert float(statistics["std"]) == 1.0, level
        stored = zattrs_normalization(index.registry.get_experiment(name), cell["fov_name"])
        reporter = index.registry.experiments[index.registry.names.index(name)].channel_names[1]
        timepoint = stored[reporter]["timepoint_statistics"][str(int(cell["t"]))]
        assert float(meta[reporter]["timepoint_statistics"]["mean"]) == pytest.approx(timepoint["mean"], rel=1e-6)
        assert float(meta[reporter]["timepoint_statistics"]["std"]) == pytest.approx(timepoint["std"], rel=1e-6)
    assert names == {"exp_a", "exp_b"}


def test_source_channel_order_is_the_model_channel_order(plates):
    """source_channel [GFP, Phase3D] puts zarr channel 1 first, and its statistics under ch_0."""
    index = make_index([experiment(plates, "exp_a", source_channel=["GFP", "Phase3D"])])
    dataset = make_dataset(index)
    batch = dataset.__getitems__([0, 1, 2])
    metas = per_sample(batch["anchor_norm_meta"], 3)
    for patch, meta, row in zip(batch["anchor"], metas, index.anchor_rows[:3], strict=True):
        np.testing.assert_array_equal(patch.numpy(), direct_patch(index, row, channels=[1, 0]))
        cell = index.tracks.iloc[row]
        stored = zattrs_normalization(index.registry.experiments[0], cell["fov_name"])
        assert float(meta["ch_0"]["fov_statistics"]["mean"]) == pytest.approx(stored["GFP"]["fov_statistics"]["mean"])
        assert float(meta["ch_1"]["fov_statistics"]["mean"]) == pytest.approx(
            stored["Phase3D"]["fov_statistics"]["mean"]
        )


# Predict mode, negatives


def test_predict_mode_reads_every_row_with_its_tracking_index(plates, tmp_path):
    """fit=False: one sample per tracks row in order, with an index of original (unclamped) tracking columns."""
    rows = (
        [(1, t, -1, 5.5, 59.2) for t in range(4)]  # near the corner: clamped to (8, 56)
        + [(2, t, 1, 30.0, 30.0) for t in range(4, 6)]
        + [(3, 5, -1, 40.0, 12.0)]  # a single frame: no positive, still predicted
    )
    tracks_path = write_tracks(tmp_path, {"A/1/0": rows})
    index = make_index([experiment(plates, "exp_a", tracks_path, start_hpi=1.0)], include_wells=["A/1"])
    dataset = make_dataset(index, fit=False)
    assert len(dataset) == len(index.tracks) == len(rows)
    assert len(index.valid_anchors) < len(index.tracks)
    batch = dataset.__getitems__(list(range(len(rows))))
    assert set(batch) == {"anchor", "anchor_norm_meta", "index"}
    assert len(batch["index"]) == len(rows)
    for row, (patch, entry) in enumerate(zip(batch["anchor"], batch["index"], strict=True)):
        cell = index.tracks.iloc[row]
        np.testing.assert_array_equal(patch.numpy(), direct_patch(index, row))
        assert set(entry) == set(PREDICT_INDEX_COLUMNS)
        assert entry == {column: cell[column] for column in PREDICT_INDEX_COLUMNS}
        assert isinstance(entry["experiment"], str)
        assert isinstance(entry["condition"], str)
    first = batch["index"][0]
    assert (first["experiment"], first["condition"], first["fov_name"]) == ("exp_a", "uninfected", "A/1/0")
    assert (first["track_id"], first["t"], first["y"], first["x"], first["z"]) == (1, 0, 5.5, 59.2, 2)
    assert (index.tracks.iloc[0]["y_clamp"], index.tracks.iloc[0]["x_clamp"]) == (8, 56)
    assert batch["index"][4]["parent_track_id"] == 1
    assert batch["index"][4]["hours_post_infection"] == pytest.approx(1.0 + 4 * 0.5)
    assert [entry["id"] for entry in batch["index"]] == list(range(1, len(rows) + 1))


def test_negatives_come_from_another_lineage_of_the_same_experiment(pair_index):
    """return_negative=True: each negative is a row of a different lineage in the anchor's experiment."""
    dataset = make_dataset(pair_index, return_negative=True)
    indices = list(range(len(dataset)))
    batch = dataset.__getitems__(indices)
    assert {"negative", "negative_norm_meta"} <= set(batch)
    assert batch["negative"].shape == batch["anchor"].shape
    tracks = pair_index.tracks
    for anchor, candidates in zip(
        pair_index.anchor_rows[indices], matched_rows(pair_index, batch["negative"]), strict=True
    ):
        matches = tracks.iloc[candidates]
        assert (matches["experiment"] == tracks.iloc[anchor]["experiment"]).all()
        assert (matches["lineage_id"] != tracks.iloc[anchor]["lineage_id"]).all()


# Read errors and loader


def test_corrupted_chunk_raises_array_read_error(tmp_path):
    """A corrupted chunk fails the batch with ArrayReadError naming the FOV and the time point."""
    plate = write_synthetic_plate(
        tmp_path / "plate.zarr",
        well_conditions=CONDITION_OF_WELL,
        fovs_per_well=1,
        n_frames=5,
        z_slices=3,
        yx_size=(SIZE, SIZE),
        cells_per_fov=3,
        seed=5,
    )
    plate.corrupt_chunk("A/1/0", t=2, channel=1)
    config = ExperimentConfig(
        name="broken",
        data_path=str(plate.store_path),
        tracks_path=str(plate.tracks_path),
        channel_names=list(plate.channel_names),
        condition_wells=WELLS,
    )
    index = make_index([config], z_range=(0, 3))
    dataset = make_dataset(index)
    anchors = index.valid_anchors
    broken = np.flatnonzero((anchors["fov_name"] == "A/1/0") & (anchors["t"] == 2)).tolist()
    healthy = np.flatnonzero(anchors["fov_name"] == "B/1/0").tolist()
    assert broken
    assert dataset.__getitems__(healthy)["anchor"].shape[0] == len(healthy)
    with pytest.raises(ArrayReadError, match=r"Cannot read time point 2 of array '0' of FOV 'A/1/0' in store"):
        dataset.__getitems__(healthy[:2] + broken[:1])
    predict = make_dataset(index, fit=False)
    rows = np.flatnonzero((index.tracks["fov_name"] == "A/1/0") & (index.tracks["t"] == 2)).tolist()
    with pytest.raises(ArrayReadError, match=r"time point 2 of array '0' of FOV 'A/1/0'"):
        predict.__getitems__(rows)


def test_threaded_loader_with_flexible_batch_sampler(pair_index):
    """A ThreadedDataLoader over FlexibleBatchSampler batches yields the dataset's own batches, 8 anchors each."""
    dataset = make_dataset(pair_index)
    sampler = FlexibleBatchSampler(pair_index.valid_anchors, batch_size=8, seed=3)
    loader = ThreadedDataLoader(dataset, batch_sampler=sampler, num_workers=2, collate_fn=lambda batch: batch)
    batches = list(loader)
    assert len(batches) == len(sampler) > 1
    for number, batch in enumerate(batches):
        assert isinstance(batch, dict)
        assert batch["anchor"].shape == (8, 2, Z_SLICES, *PATCH)
        assert batch["positive"].shape == (8, 2, Z_SLICES, *PATCH)
        for key in ("anchor_norm_meta", "positive_norm_meta"):
            assert batch[key]["ch_0"]["fov_statistics"]["mean"].shape == (8,)
        expected = dataset.__getitems__(sampler.batch(0, number))
        torch.testing.assert_close(batch["anchor"], expected["anchor"], rtol=0, atol=0)
        torch.testing.assert_close(batch["positive"], expected["positive"], rtol=0, atol=0)
