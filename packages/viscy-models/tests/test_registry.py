import ast
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import viscy_models
from viscy_models import get_model, list_models, register_model
from viscy_models._registry import MODELS

# The names (and order) the hand-kept registry had before models registered themselves.
REGISTERED_NAMES = (
    "unext2",
    "fcmae",
    "unet2d",
    "unet25d",
    "beta_vae_25d",
    "beta_vae_monai",
    "contrastive_encoder",
    "resnet3d_encoder",
)


def test_root_exports_the_eight_models():
    for name in (
        "BetaVae25D",
        "BetaVaeMonai",
        "ContrastiveEncoder",
        "FullyConvolutionalMAE",
        "ResNet3dEncoder",
        "UNeXt2",
        "Unet2d",
        "Unet25d",
    ):
        assert isinstance(getattr(viscy_models, name), type)
        assert name in viscy_models.__all__


def test_subpackages_export_their_models():
    from viscy_models.contrastive import ContrastiveEncoder, ResNet3dEncoder
    from viscy_models.unet import FullyConvolutionalMAE, Unet2d, Unet25d, UNeXt2
    from viscy_models.vae import BetaVae25D, BetaVaeMonai

    subpackage_classes = [
        UNeXt2,
        FullyConvolutionalMAE,
        Unet2d,
        Unet25d,
        BetaVae25D,
        BetaVaeMonai,
        ContrastiveEncoder,
        ResNet3dEncoder,
    ]
    for cls in subpackage_classes:
        assert getattr(viscy_models, cls.__name__) is cls


def test_list_models():
    assert list_models() == list(REGISTERED_NAMES)


def test_every_model_exported_at_the_root_is_registered_once():
    exported = {getattr(viscy_models, name) for name in viscy_models.__all__ if name[0].isupper()}
    registered = list(MODELS.values())
    assert exported <= set(registered)
    assert len(set(registered)) == len(registered)


def _imported_modules(init_file: Path) -> set[str]:
    return {
        node.module
        for node in ast.walk(ast.parse(init_file.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }


def test_every_module_that_registers_a_model_is_imported_by_import_viscy_models():
    """A decorator runs only when its module is imported: each such module is imported up the package chain."""
    root = Path(viscy_models.__file__).parent
    decorated = re.compile(r"^@register_model\(", re.MULTILINE)
    registering = [path for path in sorted(root.rglob("*.py")) if decorated.search(path.read_text())]
    assert len(registering) == len(REGISTERED_NAMES)
    for path in registering:
        parts = ["viscy_models", *path.relative_to(root).with_suffix("").parts]
        for depth in range(len(parts), 1, -1):
            module, package_init = ".".join(parts[:depth]), root.joinpath(*parts[1 : depth - 1], "__init__.py")
            assert module in _imported_modules(package_init), f"{package_init} does not import {module}"


@pytest.mark.usefixtures("restore_model_registry")
def test_a_registered_model_is_listed_and_built_by_name():
    @register_model("test_tiny_linear")
    class TinyLinear(nn.Module):
        def __init__(self, features: int = 2) -> None:
            super().__init__()
            self.linear = nn.Linear(features, features)

    assert TinyLinear.__name__ == "TinyLinear"  # the decorator returns the class itself
    assert list_models()[-1] == "test_tiny_linear"
    assert list_models()[:-1] == list(REGISTERED_NAMES)
    model = get_model("test_tiny_linear", features=3)
    assert isinstance(model, TinyLinear)
    assert model.linear.in_features == 3


@pytest.mark.usefixtures("restore_model_registry")
@pytest.mark.parametrize(
    ("name", "registered_to"), [("unet2d", "viscy_models.unet.unet2d.Unet2d"), ("test_twice", "First")]
)
def test_a_duplicate_name_raises(name, registered_to):
    @register_model("test_twice")
    class First(nn.Module):
        pass

    with pytest.raises(ValueError, match=f"Model name '{name}' is already registered to .*{re.escape(registered_to)}"):

        @register_model(name)
        class Second(nn.Module):
            pass

    assert MODELS["test_twice"] is First
    assert MODELS["unet2d"] is viscy_models.Unet2d


@pytest.mark.usefixtures("restore_model_registry")
def test_register_model_only_takes_module_classes():
    with pytest.raises(TypeError, match=r"decorates nn\.Module subclasses"):
        register_model("test_function")(lambda: nn.Identity())
    assert "test_function" not in list_models()


def test_get_model_builds_with_kwargs():
    model = get_model("unet2d", num_blocks=1, out_channels=2)
    assert isinstance(model, viscy_models.Unet2d)
    assert model(torch.rand(1, 1, 1, 8, 8)).shape == (1, 2, 1, 8, 8)


def test_every_registered_name_builds_a_model():
    required = {
        "fcmae": {"in_channels": 1, "out_channels": 1},
        "beta_vae_monai": {
            "spatial_dims": 2,
            "in_shape": (1, 16, 16),
            "out_channels": 1,
            "latent_size": 4,
            "channels": (4,),
            "strides": (2,),
        },
        "contrastive_encoder": {"backbone": "convnext_tiny", "in_channels": 1, "in_stack_depth": 5},
        "resnet3d_encoder": {"backbone": "resnet10"},
    }
    with torch.device("meta"):
        for name in list_models():
            assert isinstance(get_model(name, **required.get(name, {})), torch.nn.Module)


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="Unknown model 'unet3d'; available models: unext2, fcmae, unet2d") as info:
        get_model("unet3d")
    assert "resnet3d_encoder" in str(info.value)


@pytest.mark.parametrize("cls_name", [name for name in viscy_models.__all__ if name[0].isupper()])
def test_constructor_defaults_are_immutable(cls_name):
    """COMPAT-02: no list, dict or set default arguments."""
    import inspect

    for parameter in inspect.signature(getattr(viscy_models, cls_name)).parameters.values():
        assert not isinstance(parameter.default, list | dict | set), (cls_name, parameter.name)


def test_version_is_a_string():
    assert isinstance(viscy_models.__version__, str)
