import numpy as np
import pytest
import torch

from viscy_transforms import TiledSpatialCropSamplesd


def _sample():
    volume = torch.arange(4 * 6 * 6, dtype=torch.float32).reshape(1, 4, 6, 6)
    return {"index": ("A/1/0", 3), "norm_meta": {"Phase": {}}, "source": volume, "target": volume * 2}


def test_tiles_follow_a_raster_grid_from_the_origin():
    sample = _sample()
    tiles = TiledSpatialCropSamplesd(keys=["source", "target"], roi_size=(2, 3, 3), num_samples=8)(sample)
    assert len(tiles) == 8
    for i, tile in enumerate(tiles):
        z, y, x = (int(v) * r for v, r in zip(np.unravel_index(i, (2, 2, 2)), (2, 3, 3), strict=True))
        assert torch.equal(tile["source"], sample["source"][:, z : z + 2, y : y + 3, x : x + 3])
        assert torch.equal(tile["target"], 2 * tile["source"])
    assert tiles[1]["source"][0, 0, 0, 0].item() == 3.0
    assert tiles[2]["source"][0, 0, 0, 0].item() == 18.0


def test_other_entries_are_kept_in_every_tile():
    """The reference dropped everything but the keys and norm_meta (index was lost)."""
    sample = _sample()
    tiles = TiledSpatialCropSamplesd(keys="source", roi_size=(2, 3, 3), num_samples=3)(sample)
    assert all(tile["index"] == sample["index"] and tile["norm_meta"] is sample["norm_meta"] for tile in tiles)
    assert all(tile["target"] is sample["target"] for tile in tiles)


def test_too_many_samples_fails():
    with pytest.raises(ValueError, match="num_samples=9 exceeds the 8 tiles"):
        TiledSpatialCropSamplesd(keys="source", roi_size=(2, 3, 3), num_samples=9)(_sample())


@pytest.mark.parametrize(("roi_size", "num_samples"), [((2, 3), 1), ((2, 0, 3), 1), ((2, 3, 3), 0)])
def test_invalid_arguments_are_rejected(roi_size, num_samples):
    with pytest.raises(ValueError, match=r"roi_size|num_samples"):
        TiledSpatialCropSamplesd(keys="source", roi_size=roi_size, num_samples=num_samples)
