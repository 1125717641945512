"""``viscy rechunk``: a training copy of a plate in a read-friendly layout gives the same patches."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from viscy_data.ome_compat import SUPPORTED_OME_VERSIONS, fov_name, open_ome_zarr, open_tensorstore
from viscy_data.synthetic import write_synthetic_plate
from viscy_utils.cli import main
from viscy_utils.rechunk import rechunk_plate

pytest.importorskip("tensorstore")

CHANNELS = ["Phase3D", "GFP"]


def _anchor_patches(store: Path, tracks_path: Path) -> np.ndarray:
    """Every tracked cell's (C, Z, 16, 16) patch, read by TripletDataset (predict mode) as the training readers do."""
    from viscy_data.triplet import TripletDataset

    with open_ome_zarr(store, layout="hcs", mode="r") as plate:
        positions = [position for _, position in plate.positions()]
        tables = [pd.read_csv(tracks_path / fov_name(position) / "tracks.csv") for position in positions]
        dataset = TripletDataset(
            positions, tables, channel_names=CHANNELS, initial_yx_patch_size=(16, 16), z_range=slice(0, 5), fit=False
        )
        assert len(dataset) > 0
        return dataset.__getitems__(list(range(len(dataset))))["anchor"].numpy().copy()


def _images(store: Path) -> dict[str, np.ndarray]:
    """Every FOV's array "0", read whole."""
    with open_ome_zarr(store, layout="hcs", mode="r") as plate:
        return {name: open_tensorstore(position["0"]).read().result() for name, position in plate.positions()}


def _attributes(store: Path) -> list[tuple[str, dict]]:
    """Attributes of the plate, its wells and positions, in order."""
    with open_ome_zarr(store, layout="hcs", mode="r") as plate:
        nodes = [("", plate), *plate.wells(), *plate.positions()]
        return [(name, dict(node.zattrs)) for name, node in nodes]


def _write_plate(path: Path, values: np.ndarray, version: str = "0.4") -> Path:
    """A one-FOV plate holding ``values`` (T, C, Z, Y, X) as array "0"."""
    with open_ome_zarr(path, layout="hcs", mode="w-", channel_names=CHANNELS, version=version) as plate:
        plate.create_position("A", "1", "0").create_image("0", values)
    return path


def test_cli_copy_gives_the_same_patches_and_keeps_metadata(tmp_path, synthetic_plate, viscy, capsys):
    output = tmp_path / "rechunked.zarr"
    viscy(
        "rechunk",
        "--data_path",
        str(synthetic_plate.store_path),
        "--output_path",
        str(output),
        "--chunk_yx",
        "32",
        "--compression",
        "none",
    )
    out = capsys.readouterr().out
    # 8 FOVs: a line after every one (a tenth, rounded up), but not after the last, then a summary
    progress = [line for line in out.splitlines() if line.startswith("Rechunking FOVs")]
    assert [line.split(" | ")[0] for line in progress] == [f"Rechunking FOVs {n}/8 ({n / 8:.0%})" for n in range(1, 8)]
    assert all(" FOV/s | " in line and " MB/s | ETA " in line for line in progress)
    assert re.search(r"^Rechunking done: 8 FOVs, 5\.2 MB in \d+:\d\d:\d\d$", out, flags=re.MULTILINE)

    with open_ome_zarr(output, layout="hcs", mode="r") as plate:
        assert list(plate.channel_names) == CHANNELS
        for _, position in plate.positions():
            assert position["0"].chunks == (1, 1, 5, 32, 32)
            assert position["0"].dtype == np.float32
            assert open_tensorstore(position["0"]).spec().to_json()["metadata"]["compressor"] is None
    # channel names, OME metadata (scales, transforms), normalization statistics, well layout
    assert _attributes(output) == _attributes(synthetic_plate.store_path)
    assert "normalization" in _attributes(output)[-1][1]
    source, copy = _images(synthetic_plate.store_path), _images(output)
    assert list(copy) == list(source)
    for name in source:
        np.testing.assert_array_equal(copy[name], source[name])
    tracks = synthetic_plate.tracks_path
    np.testing.assert_array_equal(_anchor_patches(output, tracks), _anchor_patches(synthetic_plate.store_path, tracks))


def test_default_chunks_are_clamped_to_the_image_and_lz4_compressed(tmp_path, synthetic_plate):
    report = rechunk_plate(synthetic_plate.store_path, tmp_path / "copy.zarr")
    assert report.chunks == (1, 1, 5, 64, 64)  # 128 > the 64 x 64 image
    assert report.shards is None
    assert (report.n_fovs, report.dtype, report.bytes_copied) == (8, "float32", 8 * 4 * 2 * 5 * 64 * 64 * 4)
    with open_ome_zarr(tmp_path / "copy.zarr", layout="hcs", mode="r") as plate:
        metadata = open_tensorstore(plate["A/1/0"]["0"]).spec().to_json()["metadata"]
    compressor = metadata["compressor"] if metadata["zarr_format"] == 2 else metadata["codecs"][-1]["configuration"]
    assert compressor["cname"] == "lz4"


def test_float16_copy_reports_its_rounding_error(tmp_path, synthetic_plate, capsys):
    output = tmp_path / "half.zarr"
    report = rechunk_plate(synthetic_plate.store_path, output, chunk_yx=16, dtype="float16")
    source, copy = _images(synthetic_plate.store_path), _images(output)
    errors = [np.abs(copy[name].astype(np.float64) - source[name]) for name in source]
    relative = [error / np.maximum(np.abs(source[name]), 2.0**-14) for error, name in zip(errors, source, strict=True)]
    assert all(image.dtype == np.float16 for image in copy.values())
    assert report.dtype == "float16"
    assert 0 < report.max_abs_error == max(error.max() for error in errors)
    assert 0 < report.max_rel_error == pytest.approx(max(ratio.max() for ratio in relative), rel=1e-6)
    assert report.max_rel_error <= 2.0**-11
    assert f"float16 rounding error: max absolute {report.max_abs_error:.3g}" in capsys.readouterr().out
    tracks = synthetic_plate.tracks_path
    half, full = _anchor_patches(output, tracks), _anchor_patches(synthetic_plate.store_path, tracks)
    assert np.abs(half - full).max() <= report.max_abs_error
    assert _attributes(output) == _attributes(synthetic_plate.store_path)


def test_uint16_copy_of_an_integer_plate_is_exact(tmp_path):
    plate = write_synthetic_plate(
        tmp_path / "plate.zarr", fovs_per_well=1, well_conditions={"A/1": "infected"}, dtype="uint16"
    )
    output = tmp_path / "copy.zarr"
    report = rechunk_plate(plate.store_path, output, chunk_yx=32, dtype="uint16")
    assert (report.dtype, report.max_abs_error) == ("uint16", 0.0)
    source, copy = _images(plate.store_path), _images(output)
    assert copy["A/1/0"].dtype == np.uint16
    np.testing.assert_array_equal(copy["A/1/0"], source["A/1/0"])
    np.testing.assert_array_equal(
        _anchor_patches(output, plate.tracks_path), _anchor_patches(plate.store_path, plate.tracks_path)
    )


def test_uint16_copy_of_a_float_plate_with_integer_values(tmp_path):
    values = np.arange(2 * 2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 2, 3, 8, 8)
    source = _write_plate(tmp_path / "plate.zarr", values)
    rechunk_plate(source, tmp_path / "copy.zarr", chunk_yx=4, dtype="uint16")
    copy = _images(tmp_path / "copy.zarr")["A/1/0"]
    assert copy.dtype == np.uint16
    np.testing.assert_array_equal(copy, values)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0.5, r"FOV A/1/0 \(array 0\), time point 1, channel 1 as uint16: it holds non-integer values \(e\.g\. 0\.5\)"),
        (np.nan, r"time point 1, channel 1 as uint16: it holds non-integer values \(e\.g\. nan\)"),
        (-1.0, r"time point 1, channel 1 as uint16: its values span \[-1\.0, 0\.0\], outside \[0, 65535\]"),
        (70000.0, r"time point 1, channel 1 as uint16: its values span \[0\.0, 70000\.0\], outside \[0, 65535\]"),
    ],
)
def test_uint16_refuses_values_it_cannot_hold_and_leaves_no_output(tmp_path, value, message):
    values = np.zeros((2, 2, 3, 8, 8), dtype=np.float32)
    values[1, 1, 0, 0, 0] = value
    source = _write_plate(tmp_path / "plate.zarr", values)
    with pytest.raises(ValueError, match=message):
        rechunk_plate(source, tmp_path / "copy.zarr", dtype="uint16")
    assert not (tmp_path / "copy.zarr").exists()


def test_float16_refuses_values_beyond_its_range(tmp_path):
    values = np.zeros((1, 2, 3, 8, 8), dtype=np.float32)
    values[0, 0, 1, 2, 3] = 1e6
    source = _write_plate(tmp_path / "plate.zarr", values)
    with pytest.raises(
        ValueError, match=r"channel 0 as float16: .* beyond float16's range of \+-65504 \(e\.g\. 1000000\.0\)"
    ):
        rechunk_plate(source, tmp_path / "copy.zarr", dtype="float16")
    assert not (tmp_path / "copy.zarr").exists()


def test_refuses_to_overwrite_unless_asked(tmp_path, synthetic_plate, capsys):
    output = tmp_path / "copy.zarr"
    output.mkdir()
    (output / "mine.txt").write_text("keep me")
    args = ["rechunk", "--data_path", str(synthetic_plate.store_path), "--output_path", str(output)]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line == f"FileExistsError: {output} exists; pass overwrite=True to replace it."
    assert (output / "mine.txt").read_text() == "keep me"
    rechunk_plate(synthetic_plate.store_path, output, chunk_yx=32, overwrite=True)
    assert not (output / "mine.txt").exists()
    assert len(_images(output)) == 8


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"chunk_yx": 0}, ValueError, r"chunk_yx must be a positive number of pixels \(e\.g\. 128\), got 0\."),
        ({"chunk_yx": 32.0}, ValueError, "got 32.0"),
        ({"dtype": "int8"}, ValueError, r"dtype 'int8' is not supported; choose one of \['uint16', 'float16', None\]"),
        ({"compression": "gzip"}, ValueError, r"compression 'gzip' .* choose one of \['none', 'lz4', 'zstd'\]"),
    ],
)
def test_bad_options_fail_before_anything_is_written(tmp_path, synthetic_plate, kwargs, error, message):
    with pytest.raises(error, match=message):
        rechunk_plate(synthetic_plate.store_path, tmp_path / "copy.zarr", **kwargs)
    assert not (tmp_path / "copy.zarr").exists()


def test_bad_sources_and_outputs_are_named(tmp_path, synthetic_plate):
    source = synthetic_plate.store_path
    with pytest.raises(FileNotFoundError, match=r"The source plate .*missing\.zarr does not exist\."):
        rechunk_plate(tmp_path / "missing.zarr", tmp_path / "copy.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty is not an OME-Zarr store"):
        rechunk_plate(tmp_path / "empty", tmp_path / "copy.zarr")
    with pytest.raises(ValueError, match=r"0 is an OME-Zarr Position, not an HCS plate"):
        rechunk_plate(source / "A" / "1" / "0", tmp_path / "copy.zarr")
    with pytest.raises(ValueError, match=r"lies inside the source plate"):
        rechunk_plate(source, source / "copy.zarr", overwrite=True)
    with pytest.raises(ValueError, match=r"lies inside the source plate"):
        rechunk_plate(source, source, overwrite=True)
    with pytest.raises(ValueError, match=r"contains the source plate"):
        rechunk_plate(source, source.parent, overwrite=True)
    assert len(_images(source)) == 8


@pytest.mark.skipif("0.5" in SUPPORTED_OME_VERSIONS, reason="iohub >= 0.3 writes zarr format 3")
def test_shards_need_zarr_format_3(tmp_path, synthetic_plate):
    with pytest.raises(
        ValueError, match=r"shard=True needs zarr format 3 \(OME-Zarr 0\.5\), which needs iohub >= 0\.3"
    ):
        rechunk_plate(synthetic_plate.store_path, tmp_path / "copy.zarr", shard=True)
    assert not (tmp_path / "copy.zarr").exists()


@pytest.mark.skipif("0.5" not in SUPPORTED_OME_VERSIONS, reason="zarr format 3 needs iohub >= 0.3 (Python >= 3.12)")
def test_sharded_copy_of_a_zarr_v3_plate_gives_the_same_patches(tmp_path, synthetic_plate):
    with pytest.raises(ValueError, match=r"is OME-Zarr 0\.4 \(zarr format 2\), which has no shards"):
        rechunk_plate(synthetic_plate.store_path, tmp_path / "copy.zarr", shard=True)
    plate = write_synthetic_plate(
        tmp_path / "plate.zarr",
        fovs_per_well=1,
        well_conditions={"A/1": "infected", "B/2": "uninfected"},
        version="0.5",
    )
    output = tmp_path / "sharded.zarr"
    report = rechunk_plate(plate.store_path, output, chunk_yx=24, shard=True, compression="zstd")
    assert (report.chunks, report.shards) == ((1, 1, 5, 24, 24), (1, 1, 5, 72, 72))
    with open_ome_zarr(output, layout="hcs", mode="r") as copy:
        assert copy.version == "0.5"
        assert copy["A/1/0"]["0"].chunks == (1, 1, 5, 24, 24)
        via_iohub = copy["A/1/0"]["0"][:]  # zarr-python reads the shards too
    chunk_files = [path for path in (output / "A/1/0/0/c").rglob("*") if path.is_file()]
    assert len(chunk_files) == 4 * 2  # one shard per time point and channel
    np.testing.assert_array_equal(via_iohub, _images(plate.store_path)["A/1/0"])
    assert _attributes(output) == _attributes(plate.store_path)
    np.testing.assert_array_equal(
        _anchor_patches(output, plate.tracks_path), _anchor_patches(plate.store_path, plate.tracks_path)
    )
