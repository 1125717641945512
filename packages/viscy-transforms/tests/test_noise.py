import numpy as np
import pytest
import torch

from viscy_transforms import (
    BatchedRandGaussianNoise,
    BatchedRandGaussianNoised,
    RandGaussianNoiseTensor,
    RandGaussianNoiseTensord,
)


def test_fixed_std_and_mean_statistics(device):
    data = torch.zeros(8, 1, 8, 16, 16, device=device)
    out = BatchedRandGaussianNoise(prob=1.0, mean=1.0, std=0.5, sample_std=False)(data)
    dims = (1, 2, 3, 4)
    torch.testing.assert_close(out.mean(dims).cpu(), torch.ones(8), atol=0.05, rtol=0)
    torch.testing.assert_close(out.std(dims).cpu(), torch.full((8,), 0.5), atol=0.03, rtol=0)


def test_noise_is_independent_across_samples():
    """The reference added one noise field to every selected sample."""
    out = BatchedRandGaussianNoise(prob=1.0, std=1.0, sample_std=False)(torch.zeros(4, 1, 8, 16, 16))
    correlation = torch.corrcoef(out.flatten(1))
    off_diagonal = correlation[~torch.eye(4, dtype=torch.bool)]
    assert bool((off_diagonal.abs() < 0.1).all())


def test_sampled_std_varies_per_sample_within_the_bound():
    out = BatchedRandGaussianNoise(prob=1.0, std=0.4, sample_std=True)(torch.zeros(32, 1, 8, 16, 16))
    stds = out.flatten(1).std(dim=1)
    assert bool((stds < 0.42).all())
    assert stds.max() - stds.min() > 0.15


def test_mean_can_be_overridden_per_call():
    out = BatchedRandGaussianNoise(prob=1.0, mean=0.0, std=0.0)(torch.zeros(2, 1, 2, 2, 2), mean=3.0)
    assert bool((out == 3.0).all())


def test_randomize_false_repeats_the_same_noise(make_batch):
    data = make_batch(4, 1, 2, 4, 4)
    noise = BatchedRandGaussianNoise(prob=0.5, std=1.0)
    assert torch.equal(noise(data), noise(data, randomize=False))


def test_dict_prob_is_per_sample_not_one_batch_coin(make_batch):
    """The reference drew a single coin for the whole batch in BatchedRandGaussianNoised."""
    data = make_batch(64, 1, 2, 3, 3)
    out = BatchedRandGaussianNoised(keys="source", prob=0.5, std=1.0).set_random_state(seed=0)({"source": data})
    changed = (out["source"] != data).flatten(1).any(dim=1)
    assert 16 <= int(changed.sum()) <= 48


def test_dict_keys_need_equal_shapes(make_batch):
    sample = {"source": make_batch(2, 1, 2, 3, 3), "target": make_batch(2, 2, 2, 3, 3)}
    with pytest.raises(ValueError, match="shapes"):
        BatchedRandGaussianNoised(keys=["source", "target"], prob=1.0)(sample)


def test_negative_std_is_rejected():
    with pytest.raises(ValueError, match="std"):
        BatchedRandGaussianNoise(std=-0.1)


@pytest.mark.parametrize("dtype", [np.float32, "float32", torch.float32, None])
@pytest.mark.parametrize("noise", [RandGaussianNoiseTensor, BatchedRandGaussianNoise])
def test_reference_dtype_is_accepted_silently_and_the_input_dtype_kept(noise, dtype, recwarn):
    data = torch.zeros(2, 1, 2, 4, 4, dtype=torch.float64)
    assert noise(prob=1.0, dtype=dtype)(data).dtype == torch.float64
    assert not recwarn.list


@pytest.mark.parametrize("dtype", [np.float16, "float64", torch.bfloat16])
def test_another_dtype_is_refused_naming_the_cast_to_make_instead(dtype):
    with pytest.raises(ValueError, match=r"keeps its input's floating-point dtype.*cast the data"):
        BatchedRandGaussianNoised(["a"], dtype=dtype)
    with pytest.raises(ValueError, match="RandGaussianNoiseTensor keeps"):
        RandGaussianNoiseTensord(["a"], dtype=dtype)


def test_integer_data_is_rejected():
    with pytest.raises(TypeError, match="floating-point"):
        BatchedRandGaussianNoise(prob=1.0)(torch.zeros(2, 1, 2, 2, dtype=torch.int32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tensor_noise_on_one_sample(device, dtype):
    sample = torch.zeros(1, 8, 32, 32, device=device, dtype=dtype)
    out = RandGaussianNoiseTensor(prob=1.0, std=0.2, sample_std=False, dtype=np.float32)(sample)
    assert out.shape == sample.shape
    assert out.dtype == dtype
    assert out.device == sample.device
    assert abs(float(out.std()) - 0.2) < 0.01


def test_tensor_noise_prob_is_one_decision_per_sample():
    noise = RandGaussianNoiseTensor(prob=0.3, std=1.0).set_random_state(seed=0)
    sample = torch.zeros(1, 2, 4, 4)
    decisions = [bool((noise(sample) != 0).any()) for _ in range(200)]
    assert 40 <= sum(decisions) <= 80


def test_tensor_noise_dict_gives_every_key_the_same_noise():
    sample = {"index": 0, "source": torch.zeros(1, 2, 4, 4), "target": torch.ones(1, 2, 4, 4)}
    out = RandGaussianNoiseTensord(keys=["source", "target"], prob=1.0, std=1.0)(sample)
    assert not torch.equal(out["source"], sample["source"])
    torch.testing.assert_close(out["target"] - 1, out["source"])
    assert out["index"] == 0


def test_tensor_noise_seeds_reproduce():
    sample = torch.zeros(1, 2, 4, 4)
    first = RandGaussianNoiseTensor(prob=1.0).set_random_state(seed=5)(sample)
    again = RandGaussianNoiseTensor(prob=1.0).set_random_state(seed=5)(sample)
    assert torch.equal(first, again)
