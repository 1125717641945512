import numpy as np
import pytest
import torch
from iohub.ngff import open_ome_zarr

from viscy_data.normalization import STATISTIC_NAMES, compute_statistics, read_norm_meta, write_meta_field


@pytest.fixture
def plate(tmp_path):
    with open_ome_zarr(tmp_path / "plate.zarr", layout="hcs", mode="w-", channel_names=["Phase3D", "GFP"]) as plate:
        position = plate.create_position("A", "1", "0")
        position.create_zeros("0", shape=(2, 2, 1, 4, 4), dtype=np.float32)
        yield plate


def test_compute_statistics_values():
    values = np.arange(101, dtype=np.float32)
    stats = compute_statistics(values)
    assert tuple(stats) == STATISTIC_NAMES
    assert stats["mean"] == pytest.approx(50.0)
    assert stats["std"] == pytest.approx(np.std(values))
    assert stats["median"] == pytest.approx(50.0)
    assert stats["iqr"] == pytest.approx(50.0)
    assert (stats["min"], stats["max"]) == (0.0, 100.0)
    assert stats["p1"] == pytest.approx(1.0)
    assert stats["p99_p1"] == pytest.approx(98.0)
    assert stats["p95_p5"] == pytest.approx(90.0)
    assert all(isinstance(v, float) for v in stats.values())


def test_compute_statistics_ignores_nan():
    stats = compute_statistics(np.array([1.0, np.nan, 3.0]))
    assert stats["mean"] == pytest.approx(2.0)
    assert stats["max"] == 3.0


def test_compute_statistics_rejects_all_nan():
    with pytest.raises(ValueError, match="no finite value"):
        compute_statistics(np.full(4, np.nan))


def test_write_meta_field_merges_and_creates_levels(plate):
    position = plate["A/1/0"]
    write_meta_field(position, {"dataset_statistics": {"mean": 1.0}}, "normalization", "GFP")
    write_meta_field(position, {"fov_statistics": {"mean": 2.0}}, "normalization", "GFP")
    write_meta_field(position, {"dataset_statistics": {"mean": 3.0}}, "normalization", "Phase3D")
    stored = dict(position.zattrs)["normalization"]
    assert stored["GFP"] == {"dataset_statistics": {"mean": 1.0}, "fov_statistics": {"mean": 2.0}}
    assert stored["Phase3D"] == {"dataset_statistics": {"mean": 3.0}}


def test_read_norm_meta_nested_timepoints_and_no_mutation(plate):
    position = plate["A/1/0"]
    metadata = {
        "dataset_statistics": {"mean": 1.5, "std": 2.0},
        "fov_statistics": {"mean": 1.0, "std": 1.0},
        "timepoint_statistics": {"0": {"mean": 0.5}, "1": {"mean": 0.75}},
    }
    write_meta_field(position, metadata, "normalization", "GFP")
    before = dict(position.zattrs)["normalization"]
    norm_meta = read_norm_meta(position)
    assert norm_meta["GFP"]["dataset_statistics"]["std"].dtype == torch.float32
    assert norm_meta["GFP"]["timepoint_statistics"]["1"]["mean"].item() == pytest.approx(0.75)
    norm_meta["GFP"]["fov_statistics"]["mean"] += 10
    norm_meta["GFP"].pop("dataset_statistics")
    assert dict(position.zattrs)["normalization"] == before
    assert read_norm_meta(position)["GFP"]["fov_statistics"]["mean"].item() == pytest.approx(1.0)


def test_read_norm_meta_absent_is_none(plate):
    assert read_norm_meta(plate["A/1/0"]) is None
    assert read_norm_meta(plate) is None
