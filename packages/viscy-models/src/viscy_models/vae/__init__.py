"""Variational autoencoders."""

from viscy_models.vae.beta_vae_25d import BetaVae25D, VaeDecoder, VaeEncoder, VaeUpStage
from viscy_models.vae.beta_vae_monai import BetaVaeMonai

__all__ = ["BetaVae25D", "BetaVaeMonai", "VaeDecoder", "VaeEncoder", "VaeUpStage"]
