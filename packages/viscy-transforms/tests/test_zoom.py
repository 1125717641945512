import pytest
import torch

from viscy_transforms import BatchedZoom, BatchedZoomd


def test_area_zoom_by_half_averages_blocks(device):
    data = torch.arange(16.0, device=device).reshape(1, 1, 1, 4, 4)
    out = BatchedZoom(scale_factor=(1.0, 0.5, 0.5), mode="area")(data)
    assert out.flatten().tolist() == [2.5, 4.5, 10.5, 12.5]


def test_nearest_up_then_down_is_lossless(make_batch):
    data = make_batch(2, 1, 3, 4, 4)
    up = BatchedZoom(scale_factor=2.0, mode="nearest")(data)
    assert up.shape == (2, 1, 6, 8, 8)
    assert torch.equal(BatchedZoom(scale_factor=0.5, mode="nearest")(up), data)


def test_dict_version_zooms_every_key_and_requires_them(make_batch):
    sample = {"index": 0, "source": make_batch(1, 1, 2, 4, 4), "target": make_batch(1, 2, 2, 4, 4)}
    out = BatchedZoomd(keys=["source", "target"], scale_factor=(1.0, 2.0, 2.0), mode="nearest")(sample)
    assert out["source"].shape == (1, 1, 2, 8, 8)
    assert out["target"].shape == (1, 2, 2, 8, 8)
    assert out["index"] == 0
    with pytest.raises(KeyError, match="target"):
        BatchedZoomd(keys=["source", "target"], scale_factor=2.0, mode="nearest")({"source": sample["source"]})


def test_invalid_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        BatchedZoom(scale_factor=2.0, mode="cubic")
