import ast
import inspect
from pathlib import Path

import numpy as np
import pytest
from monai import transforms as monai_transforms

import viscy_transforms

REQUIRED = inspect.Parameter.empty
KEYS = ("keys", REQUIRED)
MISSING = ("allow_missing_keys", False)
NOISE = [("prob", 0.1), ("mean", 0.0), ("std", 0.1), ("dtype", np.float32)]
# the parameters that an array transform and its dictionary version share
RAND_CROP = [("roi_size", REQUIRED), ("max_roi_size", None), ("random_center", True), ("random_size", False)]
CONTRAST = [("gamma", (0.5, 4.5)), ("prob", 0.1), ("invert_image", False), ("retain_stats", False)]
SCALE = [("factors", 0.1), ("prob", 0.1), ("channel_wise", False)]
SMOOTH = [
    ("sigma_x", (1.0, 3.0)),
    ("sigma_y", (1.0, 3.0)),
    ("sigma_z", (1.0, 3.0)),
    ("truncated", 4.0),
    ("prob", 0.5),
    ("border_type", "constant"),
]
PERCENTILES = [
    ("lower", REQUIRED),
    ("upper", REQUIRED),
    ("b_min", REQUIRED),
    ("b_max", REQUIRED),
    ("clip", False),
    ("relative", False),
    ("channel_wise", False),
]
ZOOM = [
    ("scale_factor", REQUIRED),
    ("mode", REQUIRED),
    ("align_corners", None),
    ("recompute_scale_factor", None),
    ("antialias", False),
]

# constructor parameters (name, default) of the reference's 44 exports, in order
SIGNATURES = {
    "BatchedRandSpatialCrop": RAND_CROP,
    "BatchedRandSpatialCropd": [KEYS, *RAND_CROP, MISSING],
    "BatchedCenterSpatialCrop": [("roi_size", REQUIRED)],
    "BatchedCenterSpatialCropd": [KEYS, ("roi_size", REQUIRED), MISSING],
    "TiledSpatialCropSamplesd": [KEYS, ("roi_size", REQUIRED), ("num_samples", REQUIRED)],
    "BatchedRandAdjustContrast": CONTRAST,
    "BatchedRandAdjustContrastd": [KEYS, *CONTRAST, MISSING],
    "BatchedRandScaleIntensity": SCALE,
    "BatchedRandScaleIntensityd": [KEYS, *SCALE, MISSING],
    "BatchedRandGaussianNoise": [*NOISE, ("sample_std", True)],
    "BatchedRandGaussianNoised": [KEYS, *NOISE, MISSING, ("sample_std", True)],
    "RandGaussianNoiseTensor": [*NOISE, ("sample_std", True)],
    "RandGaussianNoiseTensord": [KEYS, *NOISE, MISSING, ("sample_std", True)],
    "BatchedRandGaussianSmooth": SMOOTH,
    "BatchedRandGaussianSmoothd": [KEYS, *SMOOTH, MISSING],
    "BatchedRandHistogramShiftd": [KEYS, ("shift_range", (-0.1, 0.1)), ("prob", 0.1), MISSING],
    "BatchedRandSharpend": [KEYS, ("alpha_range", (0.1, 0.5)), ("prob", 0.1), MISSING],
    "RandInvertIntensityd": [KEYS, ("prob", 0.1), MISSING],
    "BatchedScaleIntensityRangePercentiles": [*PERCENTILES, ("dtype", np.float32)],
    "BatchedScaleIntensityRangePercentilesd": [KEYS, *PERCENTILES, ("dtype", np.float32), MISSING],
    "NormalizeSampled": [
        KEYS,
        ("level", REQUIRED),
        ("subtrahend", "mean"),
        ("divisor", "std"),
        ("remove_meta", False),
    ],
    "BatchedRandAffined": [
        KEYS,
        ("prob", 0.1),
        ("rotate_range", None),
        ("shear_range", None),
        ("translate_range", None),
        ("scale_range", None),
        ("mode", "bilinear"),
        MISSING,
    ],
    "BatchedRand3DElasticd": [
        KEYS,
        ("sigma_range", REQUIRED),
        ("magnitude_range", REQUIRED),
        ("spatial_size", None),
        ("prob", 0.1),
        ("mode", "bilinear"),
        ("padding_mode", "reflection"),
        MISSING,
    ],
    "BatchedRandFlip": [("spatial_axes", REQUIRED), ("prob", 0.5)],
    "BatchedRandFlipd": [KEYS, ("spatial_axes", (0, 1, 2)), ("prob", 0.5), MISSING],
    "BatchedRandLocalPixelShufflingd": [
        KEYS,
        ("patch_size", 3),
        ("shuffle_prob", 0.1),
        ("prob", 0.1),
        MISSING,
    ],
    "BatchedRandZStackShiftd": [
        KEYS,
        ("max_shift", 3),
        ("prob", 0.1),
        ("mode", "constant"),
        ("cval", 0.0),
        MISSING,
    ],
    "BatchedZoom": ZOOM,
    "BatchedZoomd": [KEYS, *ZOOM],
    "Decollate": [("detach", True), ("pad_batch", True), ("fill_value", None)],
    "StackChannelsd": [("channel_map", REQUIRED)],
    # MONAI wrappers: "**" marks the forwarded keyword arguments
    "CenterSpatialCropd": [KEYS, ("roi_size", REQUIRED), "**"],
    "Decollated": [KEYS, ("detach", True), ("pad_batch", True), ("fill_value", None), "**"],
    "NormalizeIntensityd": [KEYS, "**"],
    "RandAdjustContrastd": [KEYS, ("prob", REQUIRED), ("gamma", REQUIRED), "**"],
    "RandAffined": [
        KEYS,
        ("prob", REQUIRED),
        ("rotate_range", REQUIRED),
        ("shear_range", REQUIRED),
        ("scale_range", REQUIRED),
        "**",
    ],
    "RandFlipd": [KEYS, ("prob", REQUIRED), ("spatial_axis", REQUIRED), "**"],
    "RandGaussianNoised": [KEYS, ("prob", REQUIRED), ("mean", REQUIRED), ("std", REQUIRED), "**"],
    "RandGaussianSmoothd": [
        KEYS,
        ("prob", REQUIRED),
        ("sigma_x", REQUIRED),
        ("sigma_y", REQUIRED),
        ("sigma_z", REQUIRED),
        "**",
    ],
    "RandScaleIntensityd": [KEYS, ("factors", REQUIRED), ("prob", REQUIRED), "**"],
    "RandSpatialCropd": [KEYS, ("roi_size", REQUIRED), ("random_center", True), "**"],
    "RandWeightedCropd": [
        KEYS,
        ("w_key", REQUIRED),
        ("spatial_size", REQUIRED),
        ("num_samples", 1),
        "**",
    ],
    "ScaleIntensityRangePercentilesd": [KEYS, *PERCENTILES, ("dtype", None), MISSING],
    "ToDeviced": [KEYS, "**"],
}


def test_all_lists_exactly_the_44_reference_exports():
    assert len(SIGNATURES) == 44
    assert sorted(viscy_transforms.__all__) == sorted(SIGNATURES)
    assert len(set(viscy_transforms.__all__)) == len(viscy_transforms.__all__)
    assert all(not name.startswith("_") for name in viscy_transforms.__all__)


def test_version_is_a_string():
    assert isinstance(viscy_transforms.__version__, str)


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_constructor_signature_matches_the_reference(name):
    parameters = inspect.signature(getattr(viscy_transforms, name).__init__).parameters.values()
    actual = []
    for parameter in parameters:
        if parameter.name == "self":
            continue
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            actual.append("**")
        else:
            assert parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
            actual.append((parameter.name, parameter.default))
    assert actual == SIGNATURES[name]


def test_flip_default_axes_are_immutable():
    default = inspect.signature(viscy_transforms.BatchedRandFlipd).parameters["spatial_axes"].default
    assert isinstance(default, tuple)


@pytest.mark.parametrize("name", sorted(name for name, spec in SIGNATURES.items() if "**" in spec))
def test_wrappers_subclass_the_monai_transform_of_the_same_name(name):
    assert issubclass(getattr(viscy_transforms, name), getattr(monai_transforms, name))


def test_no_workspace_package_is_imported():
    forbidden = ("viscy_data", "viscy_models", "viscy_utils", "dynaclr")
    source_dir = Path(viscy_transforms.__file__).parent
    for path in source_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            assert not any(module.split(".")[0] in forbidden for module in modules), (path.name, modules)
