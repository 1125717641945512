import pytest
import torch
from monai.transforms import AdjustContrast

from viscy_transforms import BatchedRandAdjustContrast, BatchedRandAdjustContrastd


@pytest.mark.parametrize("shape", [(4, 2, 3, 5, 5), (4, 2, 5, 5)])
@pytest.mark.parametrize(("invert_image", "retain_stats"), [(False, False), (True, False), (False, True), (True, True)])
def test_matches_monai_adjust_contrast_per_sample(make_batch, device, shape, invert_image, retain_stats):
    data = make_batch(*shape, device=device) * 3 - 1
    adjust = BatchedRandAdjustContrast(gamma=2.5, prob=1.0, invert_image=invert_image, retain_stats=retain_stats)
    out = adjust(data)
    reference = AdjustContrast(2.5, invert_image=invert_image, retain_stats=retain_stats)
    for sample, adjusted in zip(data, out, strict=True):
        torch.testing.assert_close(adjusted, reference(sample).as_tensor(), atol=1e-6, rtol=1e-5)


def test_gamma_is_drawn_per_sample_within_the_range(make_batch):
    data = make_batch(1, 1, 1, 1, 200).expand(32, -1, -1, -1, -1)
    data = torch.cat([torch.zeros_like(data[..., :1]), data, torch.ones_like(data[..., :1])], dim=-1)
    out = BatchedRandAdjustContrast(gamma=(1.5, 3.0), prob=1.0).set_random_state(seed=0)(data)
    # with min 0 and max 1, out = x ** gamma, so gamma = log(out) / log(x)
    inside = (data > 0.05) & (data < 0.95)
    gammas = torch.stack([(out[i][inside[i]].log() / data[i][inside[i]].log()).mean() for i in range(32)])
    assert bool((gammas > 1.5 - 1e-3).all() and (gammas < 3.0 + 1e-3).all())
    assert gammas.std() > 0.2


def test_retain_stats_keeps_mean_and_std(make_batch):
    data = make_batch(4, 1, 3, 8, 8) * 5 + 2
    out = BatchedRandAdjustContrast(gamma=(0.5, 4.0), prob=1.0, retain_stats=True)(data)
    dims = (1, 2, 3, 4)
    torch.testing.assert_close(out.mean(dims), data.mean(dims), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.std(dims), data.std(dims), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("gamma", [0.0, -1.0, (0.0, 2.0), (-1.0, 2.0), (1.0, 2.0, 3.0), "1"])
def test_invalid_gamma_is_rejected(gamma):
    with pytest.raises(ValueError, match="gamma"):
        BatchedRandAdjustContrast(gamma=gamma)


def test_gamma_pair_is_sorted():
    assert BatchedRandAdjustContrast(gamma=(3.0, 1.0)).gamma == (1.0, 3.0)


def test_invalid_prob_is_rejected():
    with pytest.raises(ValueError, match=r"prob must be a number in \[0, 1\]"):
        BatchedRandAdjustContrast(prob=1.5)


def test_randomize_false_repeats(make_batch):
    data = make_batch(8, 1, 2, 4, 4)
    adjust = BatchedRandAdjustContrast(prob=0.5)
    assert torch.equal(adjust(data), adjust(data, randomize=False))


def test_dict_version_matches_the_array_version_with_the_same_seed(make_batch):
    data = make_batch(16, 1, 2, 4, 4)
    expected = BatchedRandAdjustContrast(prob=0.5).set_random_state(seed=3)(data)
    out = BatchedRandAdjustContrastd(keys="source", prob=0.5).set_random_state(seed=3)({"source": data})
    assert torch.equal(out["source"], expected)
