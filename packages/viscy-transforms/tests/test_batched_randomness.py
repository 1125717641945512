"""Behaviour every batched random dictionary transform shares.

prob is per sample, one draw covers all keys, draws are independent across samples, the draw
comes from the transform's own keys, seeds reproduce, and shape, dtype and device are kept.
"""

import copy
import pickle

import pytest
import torch
from monai.transforms import Compose

from viscy_transforms import (
    BatchedRand3DElasticd,
    BatchedRandAdjustContrastd,
    BatchedRandAffined,
    BatchedRandFlipd,
    BatchedRandGaussianNoised,
    BatchedRandGaussianSmoothd,
    BatchedRandHistogramShiftd,
    BatchedRandLocalPixelShufflingd,
    BatchedRandScaleIntensityd,
    BatchedRandSharpend,
)

KEYS = ["source", "target"]

# every factory takes prob and returns a transform whose selected samples always change
FACTORIES = {
    "flip": lambda prob: BatchedRandFlipd(KEYS, spatial_axes=(2,), prob=prob),
    "contrast": lambda prob: BatchedRandAdjustContrastd(KEYS, gamma=(2.0, 3.0), prob=prob),
    "scale": lambda prob: BatchedRandScaleIntensityd(KEYS, factors=(0.5, 1.0), prob=prob),
    "noise": lambda prob: BatchedRandGaussianNoised(KEYS, prob=prob, std=1.0),
    "smooth": lambda prob: BatchedRandGaussianSmoothd(
        KEYS, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0), prob=prob
    ),
    "histogram_shift": lambda prob: BatchedRandHistogramShiftd(KEYS, shift_range=(0.5, 1.0), prob=prob),
    "sharpen": lambda prob: BatchedRandSharpend(KEYS, alpha_range=(0.3, 0.5), prob=prob),
    "affine": lambda prob: BatchedRandAffined(KEYS, prob=prob, rotate_range=[(0.3, 0.6), 0, 0]),
    "elastic": lambda prob: BatchedRand3DElasticd(KEYS, sigma_range=(1.0, 2.0), magnitude_range=(1.0, 2.0), prob=prob),
    "pixel_shuffle": lambda prob: BatchedRandLocalPixelShufflingd(KEYS, patch_size=2, shuffle_prob=0.5, prob=prob),
}

# with identical samples, the prob at which different samples must come out differently
INDEPENDENCE_PROB = {"flip": 0.5}

# many samples for the statistics of prob, a few for everything else
PROB_BATCH = (64, 1, 4, 6, 6)
BATCH = (8, 2, 4, 8, 8)


def _sample(make_batch, device="cpu", dtype=torch.float32, shape=BATCH):
    source = make_batch(*shape, seed=1, dtype=dtype, device=device)
    return {"index": ("A/1/0", 3), "norm_meta": None, "source": source, "target": source.clone()}


def _changed(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    if before.shape != after.shape:
        return torch.ones(before.shape[0], dtype=torch.bool)
    return (before != after).flatten(1).any(dim=1).cpu()


@pytest.fixture(params=sorted(FACTORIES))
def name(request):
    return request.param


def test_prob_zero_changes_nothing(name, make_batch):
    sample = _sample(make_batch)
    out = FACTORIES[name](0.0)(sample)
    for key in KEYS:
        assert torch.equal(out[key], sample[key])


def test_prob_one_changes_every_sample(name, make_batch):
    sample = _sample(make_batch, shape=PROB_BATCH)
    out = FACTORIES[name](1.0).set_random_state(seed=0)(sample)
    assert bool(_changed(sample["source"], out["source"]).all())


def test_prob_is_per_sample(name, make_batch):
    sample = _sample(make_batch, shape=PROB_BATCH)
    out = FACTORIES[name](0.5).set_random_state(seed=0)(sample)
    changed = int(_changed(sample["source"], out["source"]).sum())
    # Binomial(64, 0.5): mean 32, sd 4
    assert 16 <= changed <= 48


def test_prob_is_not_squared(name, make_batch):
    """BatchedRand3DElasticd drew a batch coin and then a per-sample coin (prob squared)."""
    sample = _sample(make_batch, shape=PROB_BATCH)
    out = FACTORIES[name](0.3).set_random_state(seed=0)(sample)
    changed = int(_changed(sample["source"], out["source"]).sum())
    # Binomial(64, 0.3): mean 19, sd 3.7; prob squared would give about 6
    assert 11 <= changed <= 30


def test_same_draw_for_every_key(name, make_batch):
    sample = _sample(make_batch)
    out = FACTORIES[name](0.5).set_random_state(seed=3)(sample)
    assert not torch.equal(out["source"], sample["source"])
    assert torch.equal(out["source"], out["target"])


def test_draws_are_independent_across_samples(name, make_batch):
    one = make_batch(1, *BATCH[1:], seed=2)
    sample = {"source": one.expand(BATCH).clone(), "target": one.expand(BATCH).clone()}
    out = FACTORIES[name](INDEPENDENCE_PROB.get(name, 1.0)).set_random_state(seed=0)(sample)["source"]
    distinct = {out[i].cpu().numpy().tobytes() for i in range(out.shape[0])}
    assert len(distinct) >= 2 if name == "flip" else len(distinct) == out.shape[0]


def test_same_seed_same_output_and_other_seed_other_output(name, make_batch):
    sample = _sample(make_batch)
    first = FACTORIES[name](0.5).set_random_state(seed=11)(sample)["source"]
    again = FACTORIES[name](0.5).set_random_state(seed=11)(sample)["source"]
    other = FACTORIES[name](0.5).set_random_state(seed=12)(sample)["source"]
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_torch_manual_seed_before_construction_reproduces(name, make_batch):
    sample = _sample(make_batch)
    torch.manual_seed(5)
    first = FACTORIES[name](0.5)(sample)["source"]
    torch.manual_seed(5)
    again = FACTORIES[name](0.5)(sample)["source"]
    assert torch.equal(first, again)


def test_compose_set_random_state_reaches_the_transform(name, make_batch):
    sample = _sample(make_batch)
    first = Compose([FACTORIES[name](0.5)]).set_random_state(seed=4)(sample)["source"]
    again = Compose([FACTORIES[name](0.5)]).set_random_state(seed=4)(sample)["source"]
    assert torch.equal(first, again)


def test_pickled_copy_continues_the_same_stream(name, make_batch):
    sample = _sample(make_batch)
    transform = FACTORIES[name](0.5).set_random_state(seed=9)
    clone = pickle.loads(pickle.dumps(transform))
    deep = copy.deepcopy(transform)
    expected = transform(sample)["source"]
    assert torch.equal(clone(sample)["source"], expected)
    assert torch.equal(deep(sample)["source"], expected)


def test_other_entries_pass_through_and_input_is_not_mutated(name, make_batch):
    sample = _sample(make_batch)
    original = dict(sample)
    snapshot = sample["source"].clone()
    out = FACTORIES[name](1.0)(sample)
    assert out["index"] is sample["index"]
    assert out["norm_meta"] is None
    assert sample == original
    assert torch.equal(sample["source"], snapshot)


def test_missing_keys(name, make_batch):
    sample = _sample(make_batch)
    del sample["target"]
    with pytest.raises(KeyError, match=r"target.*keys present"):
        FACTORIES[name](1.0)(sample)
    transform = FACTORIES[name](1.0)
    transform.allow_missing_keys = True
    assert set(transform(sample)) == {"index", "norm_meta", "source"}
    assert transform({"index": 0}) == {"index": 0}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_device_preserved(name, make_batch, device, dtype):
    sample = _sample(make_batch, device=device, dtype=dtype)
    out = FACTORIES[name](0.5).set_random_state(seed=0)(sample)
    for key in KEYS:
        assert out[key].shape == sample[key].shape
        assert out[key].dtype == dtype
        assert out[key].device == sample[key].device


def test_no_autograd_graph(name, make_batch):
    sample = _sample(make_batch)
    sample["source"].requires_grad_(True)
    out = FACTORIES[name](1.0)(sample)
    assert not out["source"].requires_grad
