"""Beta-VAE wrapping MONAI's VarAutoEncoder."""

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, Literal

from monai.networks.layers import Norm
from monai.networks.nets import VarAutoEncoder
from torch import Tensor, nn

from viscy_models._registry import register_model

NORMS = {"batch": Norm.BATCH, "instance": Norm.INSTANCE}


@register_model("beta_vae_monai")
class BetaVaeMonai(nn.Module):
    """Variational autoencoder for 2D or 3D images, built on MONAI's ``VarAutoEncoder``.

    Parameters
    ----------
    spatial_dims : int
        2 or 3.
    in_shape : Sequence[int]
        Input shape without batch, ``(C, *spatial)``.
    out_channels : int
        Reconstructed channels.
    latent_size : int
        Latent size.
    channels : Sequence[int]
        Channels of the encoder levels.
    strides : Sequence[int]
        Stride of each encoder level.
    kernel_size : int
        Convolution kernel size.
    up_kernel_size : int
        Transposed convolution kernel size.
    num_res_units : int
        Residual units per level.
    use_sigmoid : bool
        Apply a sigmoid to the reconstruction.
    norm : {"batch", "instance"}
        Normalization.
    **kwargs : Any
        Further ``VarAutoEncoder`` arguments (e.g. ``act``, ``dropout``).

    Raises
    ------
    ValueError
        If ``norm`` is neither "batch" nor "instance".
    """

    def __init__(
        self,
        spatial_dims: int,
        in_shape: Sequence[int],
        out_channels: int,
        latent_size: int,
        channels: Sequence[int],
        strides: Sequence[int],
        kernel_size: int = 3,
        up_kernel_size: int = 3,
        num_res_units: int = 0,
        use_sigmoid: bool = False,
        norm: Literal["batch", "instance"] = "instance",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"Unknown norm {norm!r}; choose one of {tuple(NORMS)}.")
        self.model = VarAutoEncoder(
            spatial_dims=spatial_dims,
            in_shape=tuple(in_shape),
            out_channels=out_channels,
            latent_size=latent_size,
            channels=tuple(channels),
            strides=tuple(strides),
            kernel_size=kernel_size,
            up_kernel_size=up_kernel_size,
            num_res_units=num_res_units,
            use_sigmoid=use_sigmoid,
            norm=NORMS[norm],
            **kwargs,
        )

    def forward(self, x: Tensor) -> SimpleNamespace:
        """Return ``SimpleNamespace(recon_x, mean, logvar, z)``; ``z`` equals ``mean`` in eval mode."""
        recon_x, mean, logvar, z = self.model(x)
        return SimpleNamespace(recon_x=recon_x, mean=mean, logvar=logvar, z=z)
