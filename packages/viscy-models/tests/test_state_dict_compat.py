"""COMPAT-01: every pinned config has exactly the reference's ordered state_dict key -> shape table.

The tables under fixtures/state_dict_tables were printed from the published reference package (see
fixtures/README.md); a checkpoint trained with the reference loads into these models with strict=True.
"""

import json
from pathlib import Path

import pytest
import torch

import viscy_models

FIXTURES = Path(__file__).parent / "fixtures"

TABLES = sorted((FIXTURES / "state_dict_tables").glob("*.json"))


def _as_kwargs(kwargs: dict) -> dict:
    return {key: tuple(value) if isinstance(value, list) else value for key, value in kwargs.items()}


def test_every_model_class_has_a_pinned_table():
    pinned = {json.loads(path.read_text())["model"] for path in TABLES}
    assert pinned == {name for name in viscy_models.__all__ if name[0].isupper()}


@pytest.mark.parametrize("table_path", TABLES, ids=[path.stem for path in TABLES])
def test_state_dict_table_matches_reference(table_path):
    table = json.loads(table_path.read_text())
    # Shapes and names do not depend on the device; "meta" skips weight initialization and keeps this fast.
    with torch.device("meta"):
        model = getattr(viscy_models, table["model"])(**_as_kwargs(table["kwargs"]))
    ours = [[key, list(tensor.shape)] for key, tensor in model.state_dict().items()]
    assert ours == table["state_dict"]


@pytest.mark.parametrize(
    ("table_name", "expected_count"),
    [
        ("unext2_convnextv2_atto", 213),
        ("unext2_default", 273),
        ("fcmae_1_1", 222),
        ("fcmae_1_1_head_conv", 227),
        ("contrastive_convnext_tiny", 194),
        ("contrastive_convnextv2_tiny", 212),
        ("contrastive_resnet50", 333),
        ("resnet3d_resnet10", 86),
        ("resnet3d_resnet18", 116),
        ("beta_vae_25d_test", 470),
        ("beta_vae_monai_2d", 23),
        ("unet2d_default", 148),
        ("unet25d_seg", 147),
        ("unet25d_reg", 142),
    ],
)
def test_pinned_tables_have_the_documented_key_counts(table_name, expected_count):
    table = json.loads((FIXTURES / "state_dict_tables" / f"{table_name}.json").read_text())
    assert len(table["state_dict"]) == expected_count


def test_reference_shaped_checkpoint_loads_strictly_and_round_trips():
    table = json.loads((FIXTURES / "state_dict_tables" / "unet2d_default.json").read_text())
    checkpoint = {key: torch.zeros(shape) for key, shape in table["state_dict"]}
    model = viscy_models.Unet2d()
    result = model.load_state_dict(checkpoint, strict=True)
    assert not result.missing_keys
    assert not result.unexpected_keys
