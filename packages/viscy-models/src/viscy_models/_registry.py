"""Name registry: build any model from a short name."""

from typing import Any

from torch import nn

from viscy_models.contrastive import ContrastiveEncoder, ResNet3dEncoder
from viscy_models.unet import FullyConvolutionalMAE, Unet2d, Unet25d, UNeXt2
from viscy_models.vae import BetaVae25D, BetaVaeMonai

MODELS: dict[str, type[nn.Module]] = {
    "unext2": UNeXt2,
    "fcmae": FullyConvolutionalMAE,
    "unet2d": Unet2d,
    "unet25d": Unet25d,
    "beta_vae_25d": BetaVae25D,
    "beta_vae_monai": BetaVaeMonai,
    "contrastive_encoder": ContrastiveEncoder,
    "resnet3d_encoder": ResNet3dEncoder,
}


def list_models() -> list[str]:
    """Return the names accepted by :func:`get_model`, in registration order."""
    return list(MODELS)


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by registry name.

    Parameters
    ----------
    name : str
        One of :func:`list_models`, e.g. ``"unext2"`` or ``"contrastive_encoder"``.
    **kwargs : Any
        Constructor arguments of the model class.

    Returns
    -------
    nn.Module
        The constructed model.

    Raises
    ------
    ValueError
        If ``name`` is not registered; the message lists the registered names.
    """
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; available models: {', '.join(MODELS)}.")
    return MODELS[name](**kwargs)
