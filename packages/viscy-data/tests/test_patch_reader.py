"""PatchReader: the one batched read path of TripletDataset and MultiExperimentTripletDataset."""

import numpy as np
import pytest
import torch

from viscy_data.ome_compat import open_ome_zarr
from viscy_data.patch_reader import MISSING_CHANNEL, PatchLocations, PatchReader, channel_runs
from viscy_data.read_errors import ArrayReadError

pytest.importorskip("tensorstore")

Z_RANGE = slice(1, 4)
HALF = 6


def _locations(cells):
    return PatchLocations(*(np.array(column, dtype=np.int64) for column in zip(*cells, strict=True)))


def _expected(position, channel_map, t, y, x):
    """The patch read with numpy through iohub, missing channels as zeros."""
    image = position["0"]
    region = image[t, :, Z_RANGE, y - HALF : y + HALF, x - HALF : x + HALF]
    out = np.zeros((len(channel_map), *region.shape[1:]), dtype=np.float32)
    for output, source in enumerate(channel_map):
        if source != MISSING_CHANNEL:
            out[output] = region[source]
    return out


@pytest.fixture
def two_plates(plate_factory):
    """A float32 and a uint16 plate of 2 channels (Phase3D, GFP)."""
    return plate_factory(seed=1, fovs_per_well=1), plate_factory(seed=2, fovs_per_well=1, dtype="uint16")


def test_reads_mapped_channels_and_zeroes_missing_ones(synthetic_plate):
    """Reordered, repeated and missing channels per FOV: every patch equals numpy's read of the same region."""
    with open_ome_zarr(synthetic_plate.store_path) as plate:
        positions = [plate[name] for name in synthetic_plate.fov_names[:3]]
        maps = [[1, 0, MISSING_CHANNEL], [0, MISSING_CHANNEL, 1], [1, 1, 0]]
        reader = PatchReader([p["0"] for p in positions], maps, Z_RANGE, (2 * HALF, 2 * HALF))
        cells = [(0, 0, 20, 30), (1, 3, 40, 12), (2, 1, 32, 32), (0, 2, 50, 50)]
        anchors, others = reader.read([_locations(cells), _locations(cells[::-1])])
    assert anchors.shape == (4, 3, 3, 12, 12)
    assert anchors.dtype == torch.float32
    for batch, order in ((anchors, cells), (others, cells[::-1])):
        for patch, (fov, t, y, x) in zip(batch, order, strict=True):
            np.testing.assert_array_equal(patch.numpy(), _expected(positions[fov], maps[fov], t, y, x))


def test_missing_channels_are_zeroed_in_a_reused_array(synthetic_plate):
    """The pool hands back an array an earlier batch dirtied: the missing channel is zero again."""
    with open_ome_zarr(synthetic_plate.store_path) as plate:
        position = plate[synthetic_plate.fov_names[0]]
        reader = PatchReader([position["0"]], [[MISSING_CHANNEL, 1]], Z_RANGE, (2 * HALF, 2 * HALF))
        cells = _locations([(0, 0, 20, 20), (0, 1, 30, 30)])
        first = reader.read([cells])[0]
        address = first.data_ptr()
        first.fill_(float("nan"))
        del first
        again = reader.read([cells])[0]
    assert again.data_ptr() == address  # the same array, reused once the first batch was gone
    assert not again[:, 0].any()
    np.testing.assert_array_equal(again[0].numpy(), _expected(position, [MISSING_CHANNEL, 1], 0, 20, 20))


def test_a_held_batch_is_never_rewritten(synthetic_plate):
    """Hold a batch, read several more: its values do not change."""
    with open_ome_zarr(synthetic_plate.store_path) as plate:
        position = plate[synthetic_plate.fov_names[0]]
        reader = PatchReader([position["0"]], [[0, 1]], Z_RANGE, (2 * HALF, 2 * HALF))
        held = reader.read([_locations([(0, 0, 20, 20), (0, 1, 30, 30)])])[0]
        kept = held.clone()
        for t in range(4):
            reader.read([_locations([(0, t, 40, 40), (0, t, 25, 35)])])
    torch.testing.assert_close(held, kept, rtol=0, atol=0)


def test_mixed_dtypes_read_as_float32(two_plates):
    """A float32 and a uint16 FOV in one batch: the batch is float32 with the uint16 values exactly."""
    positions = [open_ome_zarr(plate.store_path)["A/1/0"] for plate in two_plates]
    assert {position["0"].dtype for position in positions} == {np.dtype("float32"), np.dtype("uint16")}
    reader = PatchReader([p["0"] for p in positions], [[0, 1], [0, 1]], Z_RANGE, (2 * HALF, 2 * HALF))
    assert reader.dtype == np.float32
    batch = reader.read([_locations([(0, 0, 20, 20), (1, 0, 20, 20)])])[0]
    assert batch.dtype == torch.float32
    for patch, position in zip(batch, positions, strict=True):
        np.testing.assert_array_equal(patch.numpy(), _expected(position, [0, 1], 0, 20, 20))


def test_read_error_names_store_fov_and_time_point(plate_factory):
    """A chunk that cannot be decoded stops the read naming the store, FOV and time point."""
    plate = plate_factory(seed=4, fovs_per_well=1)
    plate.corrupt_chunk("A/1/0", t=2)
    position = open_ome_zarr(plate.store_path)["A/1/0"]
    reader = PatchReader([position["0"]], [[0, 1]], Z_RANGE, (2 * HALF, 2 * HALF))
    reader.read([_locations([(0, 1, 20, 20)])])
    with pytest.raises(ArrayReadError, match=r"time point 2 of array '0' of FOV 'A/1/0' in store"):
        reader.read([_locations([(0, 1, 20, 20), (0, 2, 20, 20)])])


def test_bad_arguments_are_refused(synthetic_plate):
    with open_ome_zarr(synthetic_plate.store_path) as plate:
        image = plate[synthetic_plate.fov_names[0]]["0"]
        with pytest.raises(ValueError, match=r"1 images but 2 channel maps"):
            PatchReader([image], [[0], [1]], Z_RANGE, (8, 8))
        with pytest.raises(ValueError, match=r"Channel maps of lengths \[1, 2\]"):
            PatchReader([image, image], [[0], [0, 1]], Z_RANGE, (8, 8))
        with pytest.raises(ValueError, match="at least one image"):
            PatchReader([], [], Z_RANGE, (8, 8))


def test_channel_runs():
    assert channel_runs([0, 1]) == [(slice(0, 2), slice(0, 2))]
    assert channel_runs([0, 2]) == [(slice(0, 1), slice(0, 1)), (slice(1, 2), slice(2, 3))]
    assert channel_runs([MISSING_CHANNEL, 3, 4]) == [(slice(1, 3), slice(3, 5))]
    assert channel_runs([1, 0]) == [(slice(0, 1), slice(1, 2)), (slice(1, 2), slice(0, 1))]
