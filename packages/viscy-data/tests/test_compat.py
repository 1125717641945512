import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from viscy_data.ome_compat import (
    SUPPORTED_OME_VERSIONS,
    TensorstoreCache,
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


def test_tensorstore_cache_opens_each_key_once_across_threads_and_pickles_empty(versioned_plate):
    """Threads asking for one key share one store; a different key gets its own; a pickled cache is empty."""
    pytest.importorskip("tensorstore")
    cache = TensorstoreCache(cache_pool_bytes=1 << 20)
    with open_ome_zarr(versioned_plate.store_path, layout="hcs") as plate:
        first, second = plate["A/2/0"]["0"], plate["B/1/1"]["0"]
        with ThreadPoolExecutor(4) as pool:
            stores = list(pool.map(lambda _: cache.get(("plate", "A/2/0"), first), range(16)))
        assert all(store is stores[0] for store in stores)
        other = cache.get(("plate", "B/1/1"), second)
        assert other is not stores[0]
        np.testing.assert_array_equal(other[0, 0].read().result(), second[0, 0])
        restored = pickle.loads(pickle.dumps(cache))
        assert restored.cache_pool_bytes == 1 << 20
        assert restored.get(("plate", "A/2/0"), first) is not stores[0]
