import pytest
import torch

import viscy_models
from viscy_models import get_model, list_models


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
    assert list_models() == [
        "unext2",
        "fcmae",
        "unet2d",
        "unet25d",
        "beta_vae_25d",
        "beta_vae_monai",
        "contrastive_encoder",
        "resnet3d_encoder",
    ]


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
