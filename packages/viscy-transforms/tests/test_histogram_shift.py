import pytest
import torch

from viscy_transforms import BatchedRandHistogramShiftd


def test_each_sample_gets_one_offset_within_the_range(make_batch, device):
    data = make_batch(32, 2, 3, 4, 4, device=device)
    out = BatchedRandHistogramShiftd(keys="source", shift_range=(0.2, 0.7), prob=1.0)({"source": data})["source"]
    offsets = (out - data).flatten(1)
    torch.testing.assert_close(offsets, offsets[:, :1].expand_as(offsets))
    assert bool(((offsets[:, 0] >= 0.2 - 1e-6) & (offsets[:, 0] <= 0.7 + 1e-6)).all())
    assert offsets[:, 0].std() > 0.05


def test_same_offsets_for_every_key(make_batch):
    """The reference drew a new offset (and a new coin) for every key."""
    data = make_batch(16, 1, 2, 3, 3)
    sample = {"source": data, "target": torch.zeros(16, 3, 2, 3, 3)}
    out = BatchedRandHistogramShiftd(keys=["source", "target"], prob=0.5)(sample)
    torch.testing.assert_close(out["source"] - data, out["target"][:, :1])


@pytest.mark.parametrize("shift_range", [0.1, (0.1,), (0.1, 0.2, 0.3)])
def test_invalid_shift_range_is_rejected(shift_range):
    with pytest.raises(ValueError, match="shift_range"):
        BatchedRandHistogramShiftd(keys="source", shift_range=shift_range)
