"""NormMetaTable: a batch's normalization metadata collated on the host, one tensor per statistic."""

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from viscy_data.channel_wise import collate_norm_meta
from viscy_data.norm_meta_table import NormMetaTable
from viscy_data.normalization import read_norm_meta, select_timepoint
from viscy_data.ome_compat import open_ome_zarr

CHANNELS = ["Phase3D", "GFP"]


def _node(channels, times=(0, 1, 2), offset=0.0):
    """Metadata of one FOV: dataset/FOV statistics and per-time-point statistics of each channel."""
    return SimpleNamespace(
        zattrs={
            "normalization": {
                channel: {
                    "dataset_statistics": {"mean": 1.0 + c, "std": 2.0 + c},
                    "fov_statistics": {"mean": offset + c, "std": 3.0 + offset},
                    "timepoint_statistics": {str(t): {"mean": offset + 10 * t + c, "std": 1.0 + t} for t in times},
                }
                for c, channel in enumerate(channels)
            }
        }
    )


def _table(nodes, sources=None, labels=CHANNELS, cells=((0, 0), (1, 2))):
    fov, t = (np.array(column) for column in zip(*cells, strict=True))
    sources = sources or [labels] * len(nodes)
    return NormMetaTable(nodes, [f"F/{i}/0" for i in range(len(nodes))], sources, labels, fov, t)


def test_batches_equal_the_per_sample_metadata_collated(synthetic_plate):
    """Against the per-sample path (read_norm_meta, select_timepoint, stacked): the same float32 values."""
    with open_ome_zarr(synthetic_plate.store_path) as plate:
        positions = [plate[name] for name in synthetic_plate.fov_names]
        rng = np.random.default_rng(0)
        fov, t = rng.integers(0, len(positions), 64), rng.integers(0, 4, 64)
        table = NormMetaTable(positions, synthetic_plate.fov_names, [CHANNELS] * len(positions), CHANNELS, fov, t)
        batch = rng.choice(64, 16)
        collated = table.collate(fov[batch], t[batch])
        cells = zip(fov[batch].tolist(), t[batch].tolist(), strict=True)
        per_sample = [select_timepoint(read_norm_meta(positions[f]), time) for f, time in cells]
    expected = collate_norm_meta(per_sample)
    assert set(collated) == set(CHANNELS)
    for channel in CHANNELS:
        assert (
            set(collated[channel])
            == set(expected[channel])
            == {
                "dataset_statistics",
                "fov_statistics",
                "timepoint_statistics",
            }
        )
        for level, statistics in expected[channel].items():
            assert set(collated[channel][level]) == set(statistics)
            for name, values in statistics.items():
                assert collated[channel][level][name].dtype == torch.float32
                torch.testing.assert_close(collated[channel][level][name], values, rtol=0, atol=0)


def test_time_point_statistics_are_each_cells_own():
    table = _table([_node(CHANNELS), _node(CHANNELS, offset=100.0)], cells=((0, 0), (1, 2), (0, 1)))
    meta = table.collate(np.array([1, 0, 0]), np.array([2, 1, 0]))
    assert meta["GFP"]["timepoint_statistics"]["mean"].tolist() == [121.0, 11.0, 1.0]
    assert meta["Phase3D"]["fov_statistics"]["std"].tolist() == [103.0, 3.0, 3.0]
    assert meta["GFP"]["dataset_statistics"]["mean"].tolist() == [2.0, 2.0, 2.0]


def test_a_channel_a_fov_lacks_gets_neutral_statistics():
    """Sources None: location statistics 0, scale statistics 1, at every level the channel has elsewhere."""
    nodes = [_node(["Phase3D", "GFP"]), _node(["Phase3D", "RFP"])]
    sources = [["Phase3D", "GFP", None], ["Phase3D", None, "RFP"]]
    table = _table(nodes, sources, labels=["Phase3D", "GFP", "RFP"], cells=((0, 1), (1, 1)))
    meta = table.collate(np.array([0, 1]), np.array([1, 1]))
    assert meta["GFP"]["timepoint_statistics"]["mean"].tolist() == [11.0, 0.0]
    assert meta["GFP"]["fov_statistics"]["std"].tolist() == [3.0, 1.0]
    assert meta["RFP"]["timepoint_statistics"]["mean"].tolist() == [0.0, 11.0]
    assert meta["RFP"]["dataset_statistics"]["std"].tolist() == [1.0, 3.0]


def test_a_channel_no_fov_has_is_neutral_at_the_levels_the_others_share():
    table = _table([_node(["Phase3D"])], [["Phase3D", None]], labels=["Phase3D", "GFP"], cells=((0, 0),))
    meta = table.collate(np.array([0]), np.array([0]))
    assert set(meta["GFP"]) == set(meta["Phase3D"])
    assert meta["GFP"]["fov_statistics"] == {"mean": torch.tensor([0.0]), "std": torch.tensor([1.0])}


def test_statistics_some_fovs_lack_are_left_out_with_a_warning(caplog):
    """FOV 1 has no statistics for time point 2, which it reads: that level is dropped for every batch."""
    nodes = [_node(CHANNELS), _node(CHANNELS, times=(0, 1))]
    with caplog.at_level(logging.WARNING, logger="viscy_data.norm_meta_table"):
        table = _table(nodes, cells=((0, 0), (1, 2)))
    assert "'GFP' timepoint_statistics/mean (missing in 1 FOVs, e.g. F/1/0)" in caplog.text
    meta = table.collate(np.array([0]), np.array([0]))
    assert set(meta["GFP"]) == {"dataset_statistics", "fov_statistics"}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="viscy_data.norm_meta_table"):
        kept = _table(nodes, cells=((0, 2), (1, 1)))  # FOV 1 only reads time points it has
    assert not caplog.text
    assert "timepoint_statistics" in kept.collate(np.array([1]), np.array([1]))["GFP"]


def test_without_metadata_batches_carry_none():
    table = _table([SimpleNamespace(zattrs={}), SimpleNamespace(zattrs={})])
    assert table.collate(np.array([0]), np.array([0])) is None


def test_empty_dataset_carries_none():
    table = NormMetaTable([_node(CHANNELS)], ["F/0/0"], [CHANNELS], CHANNELS, np.array([], int), np.array([], int))
    assert table.collate(np.array([], int), np.array([], int)) is None


def test_some_fovs_without_metadata_are_refused_at_construction():
    nodes = [_node(CHANNELS), SimpleNamespace(zattrs={}), SimpleNamespace(zattrs={})]
    with pytest.raises(ValueError, match=r"1 of 2 FOVs have no normalization metadata \(F/1/0\) while the others do"):
        _table(nodes, cells=((0, 0), (1, 0)))
    assert _table(nodes, cells=((0, 0),)).collate(np.array([0]), np.array([0])) is not None  # FOV 1 is never read
