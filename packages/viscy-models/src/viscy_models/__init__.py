"""Network architectures for virtual staining and representation learning on microscopy volumes."""

from importlib.metadata import PackageNotFoundError, version

from viscy_models._registry import get_model, list_models, register_model

# Importing a family registers its models (see register_model); list_models() follows the order of these imports.
from viscy_models.unet import FullyConvolutionalMAE, Unet2d, Unet25d, UNeXt2

# isort: split
from viscy_models.vae import BetaVae25D, BetaVaeMonai

# isort: split
from viscy_models.contrastive import ContrastiveEncoder, ResNet3dEncoder

try:
    __version__ = version("viscy-models")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "BetaVae25D",
    "BetaVaeMonai",
    "ContrastiveEncoder",
    "FullyConvolutionalMAE",
    "ResNet3dEncoder",
    "UNeXt2",
    "Unet2d",
    "Unet25d",
    "get_model",
    "list_models",
    "register_model",
]
