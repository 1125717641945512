import re

import dask.array as da
import numpy as np
import pytest

from viscy_data.ome_compat import open_ome_zarr
from viscy_data.read_errors import ArrayReadError
from viscy_data.synthetic import write_synthetic_plate
from viscy_utils.meta_utils import generate_normalization_metadata, resolve_channel_ids
from viscy_utils.precompute import _normalize_image, precompute_array


def test_constant_image_divisor_is_floored_not_capped():
    # regression: the divisor was min(divisor, eps), dividing every image by at most 1e-6
    image = da.from_array(np.linspace(0, 100, 1001).reshape(1, 1, 1, 7, 143), chunks=-1)
    normalized = _normalize_image(image, 50.0, (0.0, 100.0)).compute()
    np.testing.assert_allclose(normalized.ravel(), (np.linspace(0, 100, 1001) - 50) / 100, atol=1e-9)
    constant = da.full((1, 1, 1, 4, 4), 3.0)
    np.testing.assert_allclose(_normalize_image(constant, "mean", "std").compute(), 0.0)


def test_precompute_array_writes_normalized_float16_stack(tmp_path, synthetic_plate):
    out = tmp_path / "stack"
    precompute_array(
        synthetic_plate.store_path,
        out,
        ["GFP", "Phase3D"],
        ["mean", 50.0],
        ["std", (1.0, 99.0)],
        include_wells=["A/1", "B/2"],
        exclude_fovs=["B/2/1"],
    )
    stack = da.from_npy_stack(out)
    assert stack.dtype == np.float16
    n_frames, _, z, y, x = synthetic_plate.shape
    assert stack.shape == (3, n_frames, 2, z, y, x)
    with open_ome_zarr(synthetic_plate.store_path, layout="hcs", mode="r") as plate:
        gfp = np.stack([np.asarray(plate[name]["0"][:, 1]) for name in ("A/1/0", "A/1/1")]).astype(np.float64)
    expected = (gfp - gfp.mean()) / gfp.std()
    np.testing.assert_allclose(np.asarray(stack[:2, :, 0], dtype=np.float64), expected, atol=2e-2, rtol=1e-2)
    with pytest.raises(FileExistsError):
        precompute_array(synthetic_plate.store_path, out, ["GFP"], ["mean"], ["std"])


def test_precompute_validates_inputs(tmp_path, synthetic_plate):
    plate = synthetic_plate.store_path
    with pytest.raises(ValueError, match=r"\['DAPI'\].*Phase3D"):
        precompute_array(plate, tmp_path / "a", ["DAPI"], ["mean"], ["std"])
    with pytest.raises(ValueError, match="one entry per channel"):
        precompute_array(plate, tmp_path / "b", ["GFP"], ["mean", "mean"], ["std"])
    with pytest.raises(ValueError, match="'mean' or a percentile"):
        precompute_array(plate, tmp_path / "c", ["GFP"], ["median"], ["std"])
    with pytest.raises(ValueError, match=r"\(low, high\) percentile pair"):
        precompute_array(plate, tmp_path / "d", ["GFP"], ["mean"], [(99, 1)])
    with pytest.raises(ValueError, match="wells"):
        precompute_array(plate, tmp_path / "e", ["GFP"], ["mean"], ["std"], include_wells=["Z/9"])


def test_resolve_channel_ids():
    names = ["Phase3D", "GFP"]
    assert resolve_channel_ids(-1, names) == [0, 1]
    assert resolve_channel_ids(1, names) == [1]
    with pytest.raises(ValueError, match="0=Phase3D, 1=GFP"):
        resolve_channel_ids([2], names)


def test_generate_normalization_metadata_keeps_other_attributes(tmp_path, synthetic_plate):
    import shutil

    path = tmp_path / "plate.zarr"
    shutil.copytree(synthetic_plate.store_path, path)
    with open_ome_zarr(path, layout="hcs", mode="r+") as plate:
        plate.zattrs["normalization"] = {"Old": {"dataset_statistics": {"mean": 1.0}}}
        plate.zattrs["note"] = "mine"
    generate_normalization_metadata(path, num_workers=2, channel_ids=0, grid_spacing=8)
    with open_ome_zarr(path, layout="hcs", mode="r") as plate:
        assert plate.zattrs["note"] == "mine"
        assert set(plate.zattrs["normalization"]) == {"Old", "Phase3D"}
        n_frames = synthetic_plate.shape[0]
        assert set(plate.zattrs["normalization"]["Phase3D"]["timepoint_statistics"]) == {
            str(t) for t in range(n_frames)
        }
    with pytest.raises(ValueError, match="grid_spacing"):
        generate_normalization_metadata(path, grid_spacing=0)


def test_corrupt_chunk_error_names_store_fov_array_and_time_point(tmp_path):
    """The reference ended in "RuntimeError: error during blosc decompression: -1" and nothing else."""
    plate = write_synthetic_plate(tmp_path / "plate.zarr", n_frames=3, seed=1)
    plate.corrupt_chunk("B/1/1", t=1, channel=1)
    expected = f"time point 1 of array '0' of FOV 'B/1/1' in store '{plate.store_path}'"
    with pytest.raises(ArrayReadError, match=re.escape(expected)) as error:
        generate_normalization_metadata(plate.store_path, num_workers=2, grid_spacing=8)
    assert "blosc decompression" in str(error.value.__cause__)
