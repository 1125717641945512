"""Every random transform draws its parameters apart from applying them: they can be inspected and replayed.

``draw_parameters(shape)`` then ``apply(data, params)`` is what a call does; the dictionary
versions apply one draw to every key.
"""

import dataclasses

import pytest
import torch

import viscy_transforms as vt
from viscy_transforms._affine import BatchedRandAffine
from viscy_transforms._elastic import BatchedRand3DElastic
from viscy_transforms._histogram_shift import BatchedRandHistogramShift
from viscy_transforms._invert import RandInvertIntensity
from viscy_transforms._pixel_shuffle import BatchedRandLocalPixelShuffling
from viscy_transforms._random import ParametersNotDrawnError, RandomTransform
from viscy_transforms._sharpen import BatchedRandSharpen
from viscy_transforms._zstack import BatchedRandZStackShift

BATCH = (8, 2, 6, 8, 8)
SAMPLE = (2, 6, 8, 8)

# every random array transform, at a prob where some samples change and others do not
ARRAY = {
    "affine": lambda: BatchedRandAffine(prob=0.5, rotate_range=0.5, scale_range=(0.8, 1.2)),
    "contrast": lambda: vt.BatchedRandAdjustContrast(gamma=(0.5, 2.0), prob=0.5),
    "crop": lambda: vt.BatchedRandSpatialCrop(roi_size=(3, 5, 5)),
    "elastic": lambda: BatchedRand3DElastic(sigma_range=(1.0, 2.0), magnitude_range=(1.0, 2.0), prob=0.5),
    "flip": lambda: vt.BatchedRandFlip(spatial_axes=(0, 1, 2), prob=0.5),
    "histogram_shift": lambda: BatchedRandHistogramShift(prob=0.5),
    "invert": lambda: RandInvertIntensity(prob=0.5),
    "noise": lambda: vt.BatchedRandGaussianNoise(prob=0.5),
    "noise_tensor": lambda: vt.RandGaussianNoiseTensor(prob=0.5),
    "pixel_shuffle": lambda: BatchedRandLocalPixelShuffling(patch_size=2, shuffle_prob=0.5, prob=0.5),
    "scale_intensity": lambda: vt.BatchedRandScaleIntensity(factors=0.5, prob=0.5, channel_wise=True),
    "sharpen": lambda: BatchedRandSharpen(prob=0.5),
    "smooth": lambda: vt.BatchedRandGaussianSmooth(prob=0.5),
    "zstack_shift": lambda: BatchedRandZStackShift(max_shift=2, prob=0.5),
}
PER_SAMPLE = {"invert", "noise_tensor"}
# transforms with f(2 x) = 2 f(x) for a fixed draw
HOMOGENEOUS = set(ARRAY) - {"contrast", "histogram_shift", "noise", "noise_tensor"}

KEYS = ["source", "target"]
DICT = {
    "affine": lambda: vt.BatchedRandAffined(KEYS, prob=0.5, rotate_range=0.5),
    "contrast": lambda: vt.BatchedRandAdjustContrastd(KEYS, prob=0.5),
    "crop": lambda: vt.BatchedRandSpatialCropd(KEYS, roi_size=(3, 5, 5)),
    "elastic": lambda: vt.BatchedRand3DElasticd(KEYS, sigma_range=(1.0, 2.0), magnitude_range=(1.0, 2.0), prob=0.5),
    "flip": lambda: vt.BatchedRandFlipd(KEYS, prob=0.5),
    "histogram_shift": lambda: vt.BatchedRandHistogramShiftd(KEYS, prob=0.5),
    "invert": lambda: vt.RandInvertIntensityd(KEYS, prob=0.5),
    "noise": lambda: vt.BatchedRandGaussianNoised(KEYS, prob=0.5),
    "noise_tensor": lambda: vt.RandGaussianNoiseTensord(KEYS, prob=1.0),
    "pixel_shuffle": lambda: vt.BatchedRandLocalPixelShufflingd(KEYS, patch_size=2, shuffle_prob=0.5, prob=0.5),
    "scale_intensity": lambda: vt.BatchedRandScaleIntensityd(KEYS, prob=0.5),
    "sharpen": lambda: vt.BatchedRandSharpend(KEYS, prob=0.5),
    "smooth": lambda: vt.BatchedRandGaussianSmoothd(KEYS, prob=0.5),
    "zstack_shift": lambda: vt.BatchedRandZStackShiftd(KEYS, max_shift=2, prob=0.5),
}


def _data(name: str, make_batch, seed: int = 0) -> torch.Tensor:
    return make_batch(*(SAMPLE if name in PER_SAMPLE else BATCH), seed=seed)


@pytest.fixture(params=sorted(ARRAY))
def name(request):
    return request.param


def test_every_random_transform_is_covered():
    assert set(ARRAY) == set(DICT)
    assert all(isinstance(make(), RandomTransform) for make in ARRAY.values())
    assert all(isinstance(make().transform, RandomTransform) for make in DICT.values())


def test_draw_then_apply_equals_a_call(name, make_batch):
    data = _data(name, make_batch)
    called = ARRAY[name]().set_random_state(seed=3)
    by_hand = ARRAY[name]().set_random_state(seed=3)
    for _ in range(2):
        expected = called(data)
        assert torch.equal(by_hand.apply(data, by_hand.draw_parameters(data.shape)), expected)


def test_parameters_are_an_inspectable_frozen_record_of_the_call(name, make_batch):
    data = _data(name, make_batch)
    transform = ARRAY[name]().set_random_state(seed=0)
    assert transform.params is None
    transform(data)
    params = transform.params
    assert dataclasses.is_dataclass(params)
    fields = [field.name for field in dataclasses.fields(params)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(params, fields[0], None)
    for field in fields:
        value = getattr(params, field)
        if isinstance(value, torch.Tensor):
            assert value.device.type == "cpu"
            if name not in PER_SAMPLE:
                assert value.shape[0] == data.shape[0], field
    if "selected" in fields and name not in PER_SAMPLE:
        assert params.selected.dtype == torch.bool
        assert 0 < int(params.selected.sum()) < data.shape[0]


def test_replaying_parameters_gives_the_same_output(name, make_batch):
    data = _data(name, make_batch)
    transform = ARRAY[name]().set_random_state(seed=1)
    first = transform(data)
    params = transform.params
    second = transform(data)
    while torch.equal(second, first):  # a coin (invert) can land the same way twice
        second = transform(data)
    latest = transform.params
    assert torch.equal(transform(data, params=params), first)
    assert torch.equal(transform.apply(data, params), first)
    assert transform.params is latest, "applying given parameters leaves the latest draw as it is"
    assert torch.equal(transform(data, randomize=False), second)


@pytest.mark.parametrize("name", sorted(HOMOGENEOUS))
def test_parameters_apply_alike_to_other_data_of_the_same_shape(name, make_batch):
    """The same draw applied to x and to 2 * x gives outputs that differ by the factor 2."""
    data = _data(name, make_batch)
    transform = ARRAY[name]().set_random_state(seed=2)
    out = transform(data)
    torch.testing.assert_close(transform(2 * data, randomize=False), 2 * out)


def test_reusing_a_draw_before_any_draw_fails(name, make_batch):
    with pytest.raises(ParametersNotDrawnError, match="randomize=True") as error:
        ARRAY[name]()(_data(name, make_batch), randomize=False)
    assert isinstance(error.value, ValueError)
    assert isinstance(error.value, RuntimeError)


@pytest.mark.parametrize("name", sorted(set(ARRAY) - PER_SAMPLE))
def test_parameters_for_another_batch_size_are_refused(name, make_batch):
    transform = ARRAY[name]()
    params = transform.draw_parameters(BATCH)
    with pytest.raises(ValueError, match="batch"):
        transform.apply(make_batch(3, *BATCH[1:]), params)


@pytest.fixture
def sample(name, make_batch):
    source = _data(name, make_batch, seed=4)
    return {"index": 7, "source": source, "target": (1 - source) * 3}


def test_dict_version_applies_one_draw_to_every_key(name, sample):
    transform = DICT[name]().set_random_state(seed=5)
    out = transform(sample)
    params = transform.transform.params
    for key in KEYS:
        assert torch.equal(out[key], transform.transform.apply(sample[key], params))
    assert out["index"] == 7


def test_dict_version_replays_given_parameters(name, sample):
    reference = DICT[name]().set_random_state(seed=6)
    expected = reference(sample)
    transform = DICT[name]().set_random_state(seed=6)
    params = transform.draw_parameters(sample["source"].shape)
    assert transform.transform.params is None, "drawing parameters does not apply or keep them"
    replayed = transform(sample, params=params)
    for key in KEYS:
        assert torch.equal(replayed[key], expected[key])
    # drawing advanced the generator as a call does
    assert torch.equal(transform(sample)["source"], reference(sample)["source"])
