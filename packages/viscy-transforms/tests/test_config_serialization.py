"""The transforms' ``keys`` survive the round trip through jsonargparse that every LightningCLI run makes.

LightningCLI parses a config's ``class_path``/``init_args`` with jsonargparse and writes the parsed
config back as the run's ``config.yaml``; an annotation jsonargparse cannot serialize turns each
key into the text "Unable to serialize instance ...", so the saved config no longer runs.
"""

from __future__ import annotations

import inspect
import json
import typing

import pytest
import yaml

import viscy_transforms

jsonargparse = pytest.importorskip("jsonargparse")

KEYED_TRANSFORMS = [
    name
    for name in viscy_transforms.__all__
    if inspect.isclass(cls := getattr(viscy_transforms, name)) and "keys" in inspect.signature(cls).parameters
]


def test_the_keyed_transforms_are_found():
    assert {"NormalizeSampled", "BatchedRandAffined", "RandAffined", "BatchedCenterSpatialCropd"} <= set(
        KEYED_TRANSFORMS
    )


@pytest.mark.parametrize("name", KEYED_TRANSFORMS)
@pytest.mark.parametrize("keys", [["Phase3D", "GFP"], "Phase3D"])
def test_keys_are_written_back_as_given(name, keys):
    hint = typing.get_type_hints(getattr(viscy_transforms, name).__init__)["keys"]
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--keys", type=hint)
    parsed = parser.parse_args(["--keys", keys if isinstance(keys, str) else json.dumps(keys)])
    assert parsed["keys"] == keys
    assert yaml.safe_load(parser.dump(parsed))["keys"] == keys


@pytest.mark.parametrize(
    ("class_path", "init_args"),
    [
        ("BatchedRandGaussianNoised", {"keys": ["Phase3D"]}),
        (
            "BatchedScaleIntensityRangePercentilesd",
            {"keys": ["Phase3D"], "lower": 1, "upper": 99, "b_min": 0, "b_max": 1},
        ),
        ("BatchedRandSpatialCropd", {"keys": ["Phase3D"], "roi_size": [2, 4, 4]}),
    ],
)
def test_reference_only_defaults_survive_the_saved_config_round_trip(class_path, init_args, recwarn):
    """``dtype`` and ``max_roi_size`` accept only their defaults, which LightningCLI writes into config.yaml."""
    from monai.transforms import MapTransform

    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--transforms", type=list[MapTransform])
    config = [{"class_path": f"viscy_transforms.{class_path}", "init_args": init_args}]
    saved = parser.dump(parser.parse_object({"transforms": config}))
    (transform,) = parser.instantiate(parser.parse_string(saved)).transforms
    assert type(transform) is getattr(viscy_transforms, class_path)
    assert not recwarn.list
