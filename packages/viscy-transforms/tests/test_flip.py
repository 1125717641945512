import pytest
import torch

from viscy_transforms import BatchedRandFlip, BatchedRandFlipd


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_prob_one_flips_the_given_axis(make_batch, device, axis):
    data = make_batch(3, 2, 4, 5, 6, device=device)
    assert torch.equal(BatchedRandFlip(spatial_axes=axis, prob=1.0)(data), data.flip(axis + 2))


def test_prob_one_flips_all_axes(make_batch):
    data = make_batch(3, 2, 4, 5, 6)
    assert torch.equal(BatchedRandFlip(spatial_axes=[0, 1, 2], prob=1.0)(data), data.flip(2, 3, 4))


def test_golden_values():
    data = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).reshape(1, 1, 1, 2, 3)
    out = BatchedRandFlip(spatial_axes=[1, 2], prob=1.0)(data)
    assert out.flatten().tolist() == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]


def test_2d_batches_use_spatial_axes_of_their_own():
    data = torch.arange(12.0).reshape(1, 1, 3, 4)
    assert torch.equal(BatchedRandFlip(spatial_axes=1, prob=1.0)(data), data.flip(3))
    with pytest.raises(ValueError, match="spatial dimensions"):
        BatchedRandFlip(spatial_axes=2, prob=1.0)(data)


def test_prob_zero_returns_the_input_itself(make_batch):
    data = make_batch(4, 1, 2, 3, 3)
    assert BatchedRandFlip(spatial_axes=(0, 1, 2), prob=0.0)(data) is data


def test_each_sample_and_axis_draws_independently(make_batch):
    data = make_batch(64, 1, 3, 3, 3)
    out = BatchedRandFlip(spatial_axes=(0, 1, 2), prob=0.5).set_random_state(seed=0)(data)
    patterns = set()
    for sample, flipped in zip(data, out, strict=True):
        candidates = [
            (z, y, x)
            for z in (False, True)
            for y in (False, True)
            for x in (False, True)
            if torch.equal(sample.flip([d + 1 for d, f in enumerate((z, y, x)) if f]), flipped)
        ]
        assert candidates, "every output must be a flip of its input"
        patterns.add(candidates[0])
    assert len(patterns) >= 6


def test_randomize_false_reuses_the_flips(make_batch):
    data = make_batch(16, 1, 3, 3, 3)
    flip = BatchedRandFlip(spatial_axes=(0, 1, 2), prob=0.5)
    first = flip(data)
    assert torch.equal(flip(data, randomize=False), first)


def test_randomize_false_without_a_draw_fails(make_batch):
    with pytest.raises(ValueError, match="randomize=True"):
        BatchedRandFlip(spatial_axes=0)(make_batch(2, 1, 2, 2, 2), randomize=False)


@pytest.mark.parametrize("axes", [3, [0, 0], [], ["z"], -1])
def test_invalid_axes_are_rejected(axes):
    with pytest.raises(ValueError, match="spatial_axes"):
        BatchedRandFlip(spatial_axes=axes)


def test_dict_version_flips_every_key_alike(make_batch):
    source = make_batch(16, 1, 3, 4, 5)
    sample = {"norm_meta": {"a": 1}, "source": source, "target": torch.cat([source, source], dim=1)}
    out = BatchedRandFlipd(keys=["source", "target"], prob=0.5).set_random_state(seed=1)(sample)
    assert torch.equal(out["target"][:, :1], out["source"])
    assert torch.equal(out["target"][:, 1:], out["source"])
    assert not torch.equal(out["source"], source)
