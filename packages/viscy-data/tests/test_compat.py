import numpy as np
import pytest

from viscy_data.ome_compat import (
    SUPPORTED_OME_VERSIONS,
    array_name,
    array_store_path,
    array_zarr_format,
    fov_name,
    open_ome_zarr,
    open_tensorstore,
)


def test_names_and_paths(versioned_plate):
    with open_ome_zarr(versioned_plate.store_path, layout="hcs") as plate:
        position = plate["B/1/1"]
        image = position["0"]
        assert fov_name(position) == "B/1/1"
        assert array_name(image) == "/B/1/1/0"
        path = array_store_path(image)
        assert path == versioned_plate.store_path.resolve() / "B" / "1" / "1" / "0"
        assert (path / (".zarray" if array_zarr_format(image) == 2 else "zarr.json")).exists()


def test_tensorstore_reads_what_iohub_reads(versioned_plate):
    pytest.importorskip("tensorstore")
    with open_ome_zarr(versioned_plate.store_path, layout="hcs") as plate:
        image = plate["A/2/0"]["0"]
        store = open_tensorstore(image)
        np.testing.assert_array_equal(store[1, :, 1:4, 10:30, 5:25].read().result(), image[1, :, 1:4, 10:30, 5:25])


def test_open_rejects_unsupported_version(tmp_path):
    with pytest.raises(ValueError, match="is not supported by iohub"):
        open_ome_zarr(tmp_path / "x.zarr", layout="hcs", mode="w-", channel_names=["a"], version="0.3")
    assert "0.4" in SUPPORTED_OME_VERSIONS
