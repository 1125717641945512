import pytest
import torch

from viscy_transforms import BatchedRandZStackShiftd
from viscy_transforms._zstack import shift_along_z

GOLDEN = {
    "constant": [[-1, -1, 0, 1, 2], [1, 2, 3, 4, -1], [0, 1, 2, 3, 4]],
    "edge": [[0, 0, 0, 1, 2], [1, 2, 3, 4, 4], [0, 1, 2, 3, 4]],
    "wrap": [[3, 4, 0, 1, 2], [1, 2, 3, 4, 0], [0, 1, 2, 3, 4]],
    "reflect": [[2, 1, 0, 1, 2], [1, 2, 3, 4, 3], [0, 1, 2, 3, 4]],
}


@pytest.mark.parametrize("mode", sorted(GOLDEN))
def test_fixed_shifts_golden(device, mode):
    data = torch.arange(5.0, device=device).reshape(1, 1, 5, 1, 1).expand(3, 2, 5, 2, 3)
    out = shift_along_z(data, torch.tensor([2, -1, 0]), mode=mode, cval=-1.0)
    assert out.device == data.device
    assert out.is_contiguous()
    assert out[:, 0, :, 0, 0].tolist() == GOLDEN[mode]
    assert torch.equal(out, out[:, :1, :, :1, :1].expand_as(out))


def _shift_of(before: torch.Tensor, after: torch.Tensor, max_shift: int, cval: float) -> int | None:
    for shift in range(-max_shift, max_shift + 1):
        if torch.equal(shift_along_z(before.unsqueeze(0), torch.tensor([shift]), cval=cval)[0], after):
            return shift
    return None


def test_every_sample_is_shifted_by_an_integer_within_max_shift(make_batch):
    data = make_batch(32, 2, 7, 3, 3)
    target = data * 2
    transform = BatchedRandZStackShiftd(keys=["source", "target"], max_shift=2, prob=1.0, cval=-5.0)
    out = transform.set_random_state(seed=0)({"source": data, "target": target})
    shifts = [_shift_of(b, a, 2, -5.0) for b, a in zip(data, out["source"], strict=True)]
    assert None not in shifts
    assert set(shifts) == {-2, -1, 0, 1, 2}
    assert [_shift_of(b, a, 2, -5.0) for b, a in zip(target, out["target"], strict=True)] == shifts


def test_mode_is_honoured(make_batch):
    """The reference ignored mode."""
    data = make_batch(16, 1, 5, 2, 2) + 1
    out = BatchedRandZStackShiftd(keys="x", max_shift=2, prob=1.0, mode="edge", cval=-1.0)({"x": data})["x"]
    assert bool((out > 0).all())
    assert not torch.equal(out, data)


def test_zero_max_shift_is_the_identity(make_batch):
    data = make_batch(4, 1, 5, 2, 2)
    assert torch.equal(BatchedRandZStackShiftd(keys="x", max_shift=0, prob=1.0)({"x": data})["x"], data)


@pytest.mark.parametrize(("kwargs", "match"), [({"max_shift": -1}, "max_shift"), ({"mode": "nearest"}, "mode")])
def test_invalid_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchedRandZStackShiftd(keys="x", **kwargs)
