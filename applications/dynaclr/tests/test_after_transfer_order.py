"""viscy-transforms' transforms through viscy-data's after-transfer rule: declarations, order, fusion, statistics."""

import importlib
from pathlib import Path

import pytest
import torch
import yaml
from monai.transforms import Compose
from scipy.stats import ks_2samp

import viscy_transforms
from viscy_data.after_transfer import after_transfer_pipeline, declared_kind, handles_batches
from viscy_transforms import (
    BatchedCenterSpatialCropd,
    BatchedRandAdjustContrastd,
    BatchedRandAffined,
    BatchedRandGaussianNoised,
    BatchedRandGaussianSmoothd,
    BatchedRandScaleIntensityd,
)
from viscy_transforms.kinds import TransformKind

FIT_YML = Path(__file__).parents[1] / "examples" / "configs" / "fit.yml"
KEYS = ["Phase3D", "RFP"]


def _exported_classes() -> list[type]:
    return [getattr(viscy_transforms, name) for name in viscy_transforms.__all__]


def test_the_kinds_viscy_transforms_declares_are_those_the_pipeline_orders_by():
    assert {kind.value for kind in TransformKind} == {"normalize", "spatial", "intensity"}
    for cls in _exported_classes():
        instance = object.__new__(cls)  # declarations are class attributes: no constructor arguments needed
        kind = declared_kind(instance)
        batched_dictionary = cls.__name__.startswith("Batched") and cls.__name__.endswith("d")
        if batched_dictionary or cls.__name__ == "NormalizeSampled":
            assert kind is not None, cls.__name__
            assert handles_batches(instance), cls.__name__
        if cls.__module__ == "viscy_transforms._monai_wrappers" and kind is not None:
            assert not handles_batches(instance), cls.__name__  # MONAI-style: one sample at a time


def _instantiate(entries: list[dict]) -> list:
    transforms = []
    for entry in entries:
        module, name = entry["class_path"].rsplit(".", 1)
        transforms.append(getattr(importlib.import_module(module), name)(**entry["init_args"]))
    return transforms


def test_the_example_fit_config_normalizes_then_resamples_into_the_final_patch_then_changes_intensities():
    data = yaml.safe_load(FIT_YML.read_text())["data"]["init_args"]
    normalizations, augmentations = _instantiate(data["normalizations"]), _instantiate(data["augmentations"])
    final = (30, *data["final_yx_patch_size"])
    pipeline = after_transfer_pipeline([*normalizations, *augmentations], crop_keys=KEYS, crop_size=final)
    affine, *intensity = augmentations
    assert [declared_kind(t) for t in intensity] == ["intensity"] * len(intensity)
    # the affine resamples straight into the final patch: no crop, and every intensity transform runs on it
    assert list(pipeline.transforms) == [*normalizations, affine, *intensity]
    assert affine.spatial_size == final


def _textured(batch_size: int, seed: int) -> torch.Tensor:
    """Smooth random images with bright blobs, ``(B, 1, 5, 48, 48)``, values in about [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch_size, 1, 5, 6, 6, generator=generator)
    image = torch.nn.functional.interpolate(coarse, size=(5, 48, 48), mode="trilinear", align_corners=False)
    return image + 0.05 * torch.rand(image.shape, generator=generator)


def _affine(prob: float = 0.8) -> BatchedRandAffined:
    return BatchedRandAffined(
        keys=KEYS, prob=prob, rotate_range=[3.14, 0.0, 0.0], scale_range=[[1.0, 1.0], [0.8, 1.2], [0.8, 1.2]]
    )


@pytest.mark.parametrize("crop", ["data module's", "configured"])
def test_the_fused_affine_equals_the_affine_on_the_read_then_the_centre_crop_for_the_same_draws(crop):
    reference_affine, fused_affine = _affine(prob=1.0), _affine(prob=1.0)
    reference = Compose([reference_affine, BatchedCenterSpatialCropd(keys=KEYS, roi_size=(5, 32, 32))])
    if crop == "configured":  # as in a GPUTransformDataModule's list
        fused = after_transfer_pipeline([fused_affine, BatchedCenterSpatialCropd(keys=KEYS, roi_size=(5, 32, 32))])
    else:
        fused = after_transfer_pipeline([fused_affine], crop_keys=KEYS, crop_size=(5, 32, 32))
    assert list(fused.transforms) == [fused_affine]
    for seed in range(4):
        batch = {"Phase3D": _textured(16, seed), "RFP": _textured(16, seed + 100)}
        reference_affine.set_random_state(seed=seed)
        fused_affine.set_random_state(seed=seed)
        expected, actual = reference(dict(batch)), fused(dict(batch))
        for key in KEYS:
            assert actual[key].shape == (16, 1, 5, 32, 32)
            # the same sample points, resampled from a grid of another size: float32 rounding of the
            # sampling coordinates only (measured 4.4e-5 at 384 -> 160 in viscy-transforms' tests)
            torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=2e-4)


def _fit_yml_augmentations(noise_std: float = 0.2) -> list:
    """The augmentations of the example fit.yml, on Phase3D and RFP."""
    return [
        _affine(),
        BatchedRandAdjustContrastd(keys=["RFP"], prob=0.5, gamma=[0.8, 1.2]),
        BatchedRandAdjustContrastd(keys=["Phase3D"], prob=0.5, gamma=[0.8, 1.2]),
        BatchedRandScaleIntensityd(keys=["RFP"], prob=0.5, factors=0.5),
        BatchedRandScaleIntensityd(keys=["Phase3D"], prob=0.5, factors=0.5),
        BatchedRandGaussianSmoothd(keys=KEYS, prob=0.5, sigma_x=[0.25, 0.75], sigma_y=[0.25, 0.75], sigma_z=[0.0, 0.0]),
        BatchedRandGaussianNoised(keys=["RFP"], prob=0.5, mean=0.0, std=noise_std),
    ]


def _sample_statistics(pipeline: Compose, batches: int = 8) -> dict[str, torch.Tensor]:
    """Per-sample mean and std of each channel over many seeded batches."""
    stats: dict[str, list[torch.Tensor]] = {}
    for seed in range(batches):
        pipeline.set_random_state(seed=seed)
        out = pipeline({"Phase3D": _textured(64, seed), "RFP": _textured(64, seed + 1000)})
        for key in KEYS:
            values = out[key].flatten(1)
            stats.setdefault(f"{key} mean", []).append(values.mean(dim=1))
            stats.setdefault(f"{key} std", []).append(values.std(dim=1))
    return {name: torch.cat(parts) for name, parts in stats.items()}


@pytest.mark.slow
def test_intensity_transforms_after_the_crop_give_the_distributions_of_the_configured_order():
    """Configured order on the whole read vs the rule: per-sample means and stds come from one distribution."""
    configured = Compose([*_fit_yml_augmentations(), BatchedCenterSpatialCropd(keys=KEYS, roi_size=(5, 32, 32))])
    reordered = after_transfer_pipeline(_fit_yml_augmentations(), crop_keys=KEYS, crop_size=(5, 32, 32))
    assert type(reordered.transforms[0]).__name__ == "BatchedRandAffined"
    expected, actual = _sample_statistics(configured), _sample_statistics(reordered)
    for name in expected:
        # 512 samples each: a two-sample KS test; p > 0.01 for matching distributions
        assert ks_2samp(expected[name].numpy(), actual[name].numpy()).pvalue > 0.01, name
    # the test has the power to see a changed recipe: noise of std 0.3 instead of 0.2 on RFP
    stronger = _sample_statistics(
        after_transfer_pipeline(_fit_yml_augmentations(noise_std=0.3), crop_keys=KEYS, crop_size=(5, 32, 32))
    )
    assert ks_2samp(expected["RFP std"].numpy(), stronger["RFP std"].numpy()).pvalue < 1e-3
