"""The after-transfer order: normalize, spatial ending in the final crop, intensity; per-sample transforms wrapped.

The transforms here are stand-ins that declare what viscy-transforms' transforms declare (viscy-data
does not import viscy-transforms); dynaclr's tests run the real transforms through the same rule.
"""

import logging

import pytest
import torch
from monai.transforms import Compose, RandScaleIntensityd

from viscy_data.after_transfer import (
    PerSample,
    after_transfer_pipeline,
    declared_kind,
    handles_batches,
    smallest_read_yx,
)


class _Declared:
    """A batched transform of a given kind that records its name in the batch."""

    runs_on_batches = True

    def __init__(self, name: str, keys=("a",)) -> None:
        self.name = name
        self.keys = keys

    def __call__(self, data):
        return {**data, "trail": [*data.get("trail", []), self.name]}


class _Normalize(_Declared):
    transform_kind = "normalize"


class _Spatial(_Declared):
    transform_kind = "spatial"


class _Intensity(_Declared):
    transform_kind = "intensity"


class _Fusable(_Spatial):
    fuses_centre_crop = True

    def __init__(self, name: str, keys=("a",)) -> None:
        super().__init__(name, keys)
        self.spatial_size = None


class _Undeclared(_Declared):
    pass


def _names(pipeline: Compose) -> list[str]:
    return [getattr(transform, "name", type(transform).__name__) for transform in pipeline.transforms]


CROP = {"crop_keys": ["a"], "crop_size": (2, 4, 4)}


def test_transforms_run_normalize_then_spatial_then_crop_then_intensity_in_configured_order_within_a_kind():
    configured = [_Intensity("gamma"), _Spatial("flip"), _Normalize("norm"), _Intensity("noise"), _Spatial("zoom")]
    pipeline = after_transfer_pipeline(configured, **CROP)
    assert _names(pipeline) == ["norm", "flip", "zoom", "BatchedCenterSpatialCropd", "gamma", "noise"]
    assert all(transform is configured[i] for transform, i in zip(pipeline.transforms[:3], (2, 1, 4), strict=True))


def test_without_spatial_transforms_the_crop_follows_the_normalizations_and_intensity_runs_on_the_final_patch():
    pipeline = after_transfer_pipeline([_Intensity("noise"), _Normalize("norm")], **CROP)
    assert _names(pipeline) == ["norm", "BatchedCenterSpatialCropd", "noise"]
    out = pipeline({"a": torch.ones(2, 1, 4, 8, 8)})
    assert out["a"].shape == (2, 1, 2, 4, 4)
    assert out["trail"] == ["norm", "noise"]


def test_a_transform_declaring_no_kind_keeps_the_configured_order_and_is_named_in_the_log(caplog):
    configured = [_Intensity("gamma"), _Undeclared("custom"), _Spatial("flip")]
    with caplog.at_level(logging.INFO, logger="viscy_data.after_transfer"):
        pipeline = after_transfer_pipeline(configured, **CROP)
    assert _names(pipeline) == ["gamma", "custom", "flip", "BatchedCenterSpatialCropd"]
    assert "_Undeclared declare(s) no transform_kind" in caplog.text


def test_a_fusable_affine_last_among_the_spatial_transforms_resamples_into_the_crop_instead_of_being_cropped():
    affine = _Fusable("affine")
    pipeline = after_transfer_pipeline([_Intensity("noise"), _Spatial("flip"), affine], **CROP)
    assert _names(pipeline) == ["flip", "affine", "noise"]
    assert affine.spatial_size == (2, 4, 4)


@pytest.mark.parametrize(
    "configured",
    [
        [_Fusable("affine"), _Spatial("flip")],  # another spatial transform follows it
        [_Fusable("affine", keys=("a", "b"))],  # not over the crop's keys
        [_Fusable("affine", keys=("b",))],  # not over the crop's keys
        [_Fusable("affine"), _Undeclared("custom")],  # configured order: something unknown follows it
    ],
)
def test_the_crop_stays_a_crop_when_the_affine_cannot_produce_it(configured):
    pipeline = after_transfer_pipeline(configured, **CROP)
    assert "BatchedCenterSpatialCropd" in _names(pipeline)
    assert configured[0].spatial_size is None


class _CropStandIn(_Spatial):
    """A configured centre crop, as a GPUTransformDataModule's list holds one."""

    def __init__(self, size, keys=("a",)) -> None:
        super().__init__("crop", keys)
        self.centre_crop_size = size


def test_a_configured_centre_crop_right_after_the_affine_is_fused_into_it_and_later_intensity_runs_on_its_output():
    affine = _Fusable("affine")
    pipeline = after_transfer_pipeline([_Intensity("noise"), affine, _CropStandIn((2, 4, 4))])
    assert _names(pipeline) == ["affine", "noise"]
    assert affine.spatial_size == (2, 4, 4)


@pytest.mark.parametrize("size", [4, (4, 4), (2, 0, 4)])  # sizes the affine cannot produce alone
def test_a_configured_crop_of_another_form_stays_a_crop(size):
    affine = _Fusable("affine")
    pipeline = after_transfer_pipeline([affine, _CropStandIn(size)])
    assert _names(pipeline) == ["affine", "crop"]
    assert affine.spatial_size is None


def test_an_affine_with_another_output_size_is_cropped_not_resized():
    affine = _Fusable("affine")
    affine.spatial_size = (2, 6, 6)
    pipeline = after_transfer_pipeline([affine], **CROP)
    assert _names(pipeline) == ["affine", "BatchedCenterSpatialCropd"]
    assert affine.spatial_size == (2, 6, 6)


def test_nested_compose_is_flattened_and_none_gives_an_empty_pipeline():
    pipeline = after_transfer_pipeline(Compose([_Intensity("noise"), Compose([_Spatial("flip")])]))
    assert _names(pipeline) == ["flip", "noise"]
    assert after_transfer_pipeline(None).transforms == ()


def test_declarations_are_read_from_the_class_and_a_bad_kind_is_refused():
    assert declared_kind(_Spatial("flip")) == "spatial"
    assert declared_kind(_Undeclared("x")) is None
    bad = type("Bad", (_Declared,), {"transform_kind": "colour"})("x")
    with pytest.raises(ValueError, match=r"Bad.transform_kind is 'colour'; expected one of \['normalize'"):
        after_transfer_pipeline([bad])
    assert handles_batches(_Undeclared("x"))
    assert handles_batches(lambda data: data)  # a plain callable takes the batch
    assert not handles_batches(RandScaleIntensityd(keys="a", factors=0.5))  # a MONAI transform takes one sample


def test_a_monai_per_sample_transform_gets_its_own_draw_per_sample_and_is_seeded_through_the_pipeline():
    batch = {"a": torch.ones(6, 1, 2, 4, 4), "norm_meta": {"a": {"fov_statistics": {"mean": torch.arange(6.0)}}}}

    def run(seed: int) -> torch.Tensor:
        pipeline = after_transfer_pipeline([RandScaleIntensityd(keys="a", factors=0.5, prob=1.0)])
        assert isinstance(pipeline.transforms[0], PerSample)
        pipeline.set_random_state(seed=seed)
        out = pipeline(batch)
        assert out["norm_meta"] is batch["norm_meta"]
        return out["a"]

    scaled = run(seed=0)
    factors = scaled.flatten(1)
    assert torch.equal(factors.min(dim=1).values, factors.max(dim=1).values)  # one factor per sample
    assert len(set(factors[:, 0].tolist())) == 6  # ... drawn for each sample
    assert torch.equal(run(seed=0), scaled)
    assert not torch.equal(run(seed=1), scaled)


class _AffineStandIn(_Fusable):
    """Fusable, with the smallest read of a given size, recording the translate reference it was given."""

    def __init__(self, smallest: tuple[int, int, int]) -> None:
        super().__init__("affine")
        self.smallest = smallest
        self.translate_reference_size = None

    def smallest_read_size(self) -> tuple[int, int, int]:
        return self.smallest


def test_the_read_is_the_final_patch_when_the_crop_is_the_only_spatial_transform():
    pipeline = after_transfer_pipeline([_Normalize("norm"), _Intensity("noise")], **CROP)
    assert smallest_read_yx(pipeline, (48, 48), z=2) == (4, 4)
    # the read keeps the configured parity, so that it is centred on the same point
    assert smallest_read_yx(pipeline, (47, 48), z=2) == (5, 4)
    whole_y = after_transfer_pipeline([], crop_keys=["a"], crop_size=(2, 0, 4))
    assert smallest_read_yx(whole_y, (48, 48), z=2) == (48, 4)  # a non-positive crop size keeps the axis


def test_the_read_is_the_fused_affines_smallest_read_with_translations_relative_to_the_configured_read():
    affine = _AffineStandIn(smallest=(2, 41, 30))
    pipeline = after_transfer_pipeline([affine, _Intensity("noise")], **CROP)
    assert smallest_read_yx(pipeline, (48, 48), z=2) == (42, 30)
    assert affine.translate_reference_size == (2, 48, 48)
    assert smallest_read_yx(after_transfer_pipeline([_AffineStandIn((2, 60, 60))], **CROP), (48, 48), z=2) == (48, 48)


@pytest.mark.parametrize(
    "configured",
    [
        [_Spatial("flip"), _AffineStandIn((2, 10, 10))],  # another spatial transform
        [_AffineStandIn((2, 10, 10)), _Undeclared("custom")],  # a transform of unknown kind
        [_AffineStandIn((2, 10, 10)), RandScaleIntensityd(keys="a", factors=0.5)],  # runs sample by sample
    ],
)
def test_the_configured_read_is_kept_when_the_pipeline_may_sample_anywhere(configured):
    assert smallest_read_yx(after_transfer_pipeline(configured, **CROP), (48, 48), z=2) == (48, 48)
