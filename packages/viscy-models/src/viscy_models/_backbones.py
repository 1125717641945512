"""Validation of timm backbone names against the model families an architecture can adapt."""

from collections.abc import Sequence
from typing import Literal

import timm

BackboneFamily = Literal["convnext", "resnet"]


def timm_backbone_family(backbone: str, families: Sequence[BackboneFamily], owner: str) -> BackboneFamily:
    """Return the timm model family of ``backbone``.

    Parameters
    ----------
    backbone : str
        timm model name, e.g. ``"convnext_tiny"``, ``"convnextv2_atto"`` or ``"resnet50"``, optionally with a
        pretrained tag (``"convnextv2_tiny.fcmae_ft_in22k_in1k"``).
    families : Sequence[{"convnext", "resnet"}]
        timm model modules whose stems the caller knows how to replace.
    owner : str
        Name of the calling class, for the error message.

    Returns
    -------
    {"convnext", "resnet"}
        The family the backbone belongs to.

    Raises
    ------
    ValueError
        If the backbone is not a timm model of one of ``families``; the message lists the supported names.
    """
    architecture = backbone.split(".")[0]
    supported = {family: timm.list_models(module=family) for family in families}
    for family, names in supported.items():
        if architecture in names:
            return family
    listing = "; ".join(f"timm {family} models: {', '.join(names)}" for family, names in supported.items())
    raise ValueError(f"{owner} does not support backbone {backbone!r}. Supported backbones are {listing}.")
