import pytest
import torch
from monai.transforms import Randomizable

import viscy_transforms as vt

KEYS = ["image", "label"]

# each wrapper, built with its explicit arguments, and the shape it must produce from (1, 6, 8, 8)
CASES = {
    "CenterSpatialCropd": (lambda: vt.CenterSpatialCropd(keys=KEYS, roi_size=(4, 4, 4)), (1, 4, 4, 4)),
    "NormalizeIntensityd": (lambda: vt.NormalizeIntensityd(keys=KEYS), (1, 6, 8, 8)),
    "RandAdjustContrastd": (lambda: vt.RandAdjustContrastd(keys=KEYS, prob=1.0, gamma=(0.5, 2.0)), (1, 6, 8, 8)),
    "RandAffined": (
        lambda: vt.RandAffined(keys=KEYS, prob=1.0, rotate_range=0.3, shear_range=0.1, scale_range=0.1),
        (1, 6, 8, 8),
    ),
    "RandFlipd": (lambda: vt.RandFlipd(keys=KEYS, prob=1.0, spatial_axis=[0]), (1, 6, 8, 8)),
    "RandGaussianNoised": (lambda: vt.RandGaussianNoised(keys=KEYS, prob=1.0, mean=0.0, std=0.1), (1, 6, 8, 8)),
    "RandGaussianSmoothd": (
        lambda: vt.RandGaussianSmoothd(keys=KEYS, prob=1.0, sigma_x=(0.5, 1), sigma_y=(0.5, 1), sigma_z=(0.5, 1)),
        (1, 6, 8, 8),
    ),
    "RandScaleIntensityd": (lambda: vt.RandScaleIntensityd(keys=KEYS, factors=0.3, prob=1.0), (1, 6, 8, 8)),
    "RandSpatialCropd": (lambda: vt.RandSpatialCropd(keys=KEYS, roi_size=(2, 4, 4)), (1, 2, 4, 4)),
    "ScaleIntensityRangePercentilesd": (
        lambda: vt.ScaleIntensityRangePercentilesd(keys=KEYS, lower=1, upper=99, b_min=0, b_max=1),
        (1, 6, 8, 8),
    ),
    "ToDeviced": (lambda: vt.ToDeviced(keys=KEYS, device="cpu"), (1, 6, 8, 8)),
}


def _sample(make_batch):
    image = make_batch(1, 6, 8, 8)
    return {"image": image, "label": image.clone(), "weight": torch.ones(1, 6, 8, 8)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_wrapper_runs_on_a_sample_with_monai_semantics(make_batch, name):
    factory, shape = CASES[name]
    transform = factory()
    if isinstance(transform, Randomizable):
        transform.set_random_state(seed=0)
    sample = _sample(make_batch)
    out = transform(sample)
    assert out["image"].shape == shape
    assert torch.equal(torch.as_tensor(out["image"]), torch.as_tensor(out["label"]))


def test_rand_weighted_crop(make_batch):
    sample = _sample(make_batch)
    weight = torch.zeros(1, 6, 8, 8)
    weight[0, 3, 4, 4] = 1.0
    crops = vt.RandWeightedCropd(keys=KEYS, w_key="weight", spatial_size=(2, 2, 2), num_samples=3)(
        {**sample, "weight": weight}
    )
    assert len(crops) == 3
    assert all(torch.equal(crop["image"].as_tensor(), sample["image"][:, 2:4, 3:5, 3:5]) for crop in crops)


def test_decollated_splits_the_keys():
    batch = {"image": torch.zeros(2, 1, 3), "label": torch.ones(2)}
    samples = vt.Decollated(keys=["image", "label"])(batch)
    assert len(samples) == 2
    assert samples[1]["label"] == 1.0


def test_wrappers_forward_extra_keyword_arguments(make_batch):
    transform = vt.RandAffined(
        keys="image", prob=1.0, rotate_range=0.0, shear_range=0.0, scale_range=0.0, translate_range=(2, 0, 0)
    )
    assert transform.rand_affine.rand_affine_grid.translate_range == (2, 0, 0)
    normalize = vt.NormalizeIntensityd(keys="image", nonzero=True)
    assert normalize.normalizer.nonzero
