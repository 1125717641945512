"""Beta-VAE for 2.5D stacks: timm encoder with a depth-folding stem, residual pixel-shuffle decoder."""

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Literal

import timm
from monai.networks.blocks import ResidualUnit
from torch import Tensor, nn

from viscy_models._backbones import timm_backbone_family
from viscy_models._registry import register_model
from viscy_models.components.blocks import UpsampleMode, xy_upsampler
from viscy_models.components.heads import PixelToVoxelHead
from viscy_models.components.stems import StemDepthtoChannels
from viscy_models.vae._sampling import reparameterize


class VaeUpStage(nn.Module):
    """Decoder stage without skip connection: upsample, then ``conv_blocks`` MONAI residual units.

    Parameters
    ----------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels.
    scale_factor : int
        XY upsampling factor.
    mode : {"pixelshuffle", "deconv"}
        ``"pixelshuffle"``: sub-pixel upsampling to ``in_channels / scale_factor**2`` channels; ``"deconv"``:
        a transposed convolution to ``out_channels``.
    conv_blocks : int
        Residual units after upsampling.
    norm_name : str
        MONAI norm of the residual units.
    upsample_pre_conv : "default", nn.Module or None
        Convolution before the pixel shuffle.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        scale_factor: int,
        mode: UpsampleMode,
        conv_blocks: int,
        norm_name: str,
        upsample_pre_conv: Literal["default"] | Callable | None,
    ) -> None:
        super().__init__()
        self.upsample, upsampled_channels = xy_upsampler(
            in_channels, out_channels, scale_factor, mode, pre_conv=upsample_pre_conv
        )
        self.conv = nn.Sequential(
            *(
                ResidualUnit(
                    spatial_dims=2,
                    in_channels=upsampled_channels if i == 0 else out_channels,
                    out_channels=out_channels,
                    norm=norm_name,
                )
                for i in range(conv_blocks)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        """Upsample and convolve."""
        return self.conv(self.upsample(x))


class VaeEncoder(nn.Module):
    """Variational encoder: depth-folding stem, timm feature extractor, linear layers to the latent Gaussian.

    Parameters
    ----------
    backbone : str
        timm ConvNeXt or ResNet model name.
    in_channels : int
        Input channels.
    in_stack_depth : int
        Input Z slices.
    latent_dim : int
        Latent size.
    input_spatial_size : tuple[int, int]
        Input (Y, X) size, which fixes the size of the flattened feature map.
    stem_kernel_size : tuple[int, int, int]
        Stem kernel in (Z, Y, X).
    stem_stride : tuple[int, int, int]
        Stem stride in (Z, Y, X).
    drop_path_rate : float
        Stochastic depth rate of the backbone.
    pretrained : bool
        Load timm's pretrained backbone weights.

    Raises
    ------
    ValueError
        If the backbone is unsupported or the input size is not divisible by the encoder's XY reduction.
    """

    def __init__(
        self,
        backbone: str,
        in_channels: int,
        in_stack_depth: int,
        latent_dim: int,
        input_spatial_size: Sequence[int],
        stem_kernel_size: Sequence[int],
        stem_stride: Sequence[int],
        drop_path_rate: float,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        family = timm_backbone_family(backbone, ("convnext", "resnet"), "VaeEncoder")
        encoder = timm.create_model(backbone, pretrained=pretrained, features_only=True, drop_path_rate=drop_path_rate)
        if family == "convnext":
            encoder.stem_0 = nn.Identity()
        else:
            encoder.conv1 = nn.Identity()
        channels = encoder.feature_info.channels()
        reductions = encoder.feature_info.reduction()
        self.reduction = stem_stride[-1] * reductions[-1] // reductions[0]
        if stem_stride[-2] != stem_stride[-1]:
            raise ValueError(f"stem_stride must be equal in Y and X, got {tuple(stem_stride)}.")
        if any(size % self.reduction for size in input_spatial_size):
            raise ValueError(
                f"input_spatial_size={tuple(input_spatial_size)} must be divisible by the encoder's XY reduction "
                f"{self.reduction} (stem stride {stem_stride[-1]} x backbone {reductions[-1] // reductions[0]})."
            )
        self.input_spatial_size = tuple(input_spatial_size)
        self.latent_spatial_size = tuple(size // self.reduction for size in input_spatial_size)
        self.stem = StemDepthtoChannels(
            in_channels, in_stack_depth, channels[0], tuple(stem_kernel_size), tuple(stem_stride)
        )
        self.encoder = encoder
        self.fc = nn.Linear(channels[-1] * self.latent_spatial_size[0] * self.latent_spatial_size[1], latent_dim)
        self.fc_mu = nn.Linear(latent_dim, latent_dim)
        self.fc_logvar = nn.Linear(latent_dim, latent_dim)

    def forward(self, x: Tensor) -> SimpleNamespace:
        """Encode ``(B, C, Z, Y, X)`` to ``SimpleNamespace(mean, log_covariance, z)``, each ``(B, latent_dim)``.

        ``z`` is sampled with the reparameterization trick in training mode and equals ``mean`` in eval mode.
        """
        if tuple(x.shape[-2:]) != self.input_spatial_size:
            raise ValueError(
                f"VaeEncoder was built for input_spatial_size={self.input_spatial_size}, got {tuple(x.shape[-2:])}."
            )
        x = self.encoder(self.stem(x))[-1]
        x = self.fc(x.flatten(1))
        mean = self.fc_mu(x)
        log_covariance = self.fc_logvar(x)
        z = reparameterize(mean, log_covariance, self.training)
        return SimpleNamespace(mean=mean, log_covariance=log_covariance, z=z)


class VaeDecoder(nn.Module):
    """Decoder from a latent vector to a ``(B, C, Z, Y, X)`` stack.

    Parameters
    ----------
    decoder_channels : Sequence[int]
        Channels after the latent projection and after each stage; the last entry feeds the head.
    latent_dim : int
        Latent size; must be divisible by the number of latent pixels.
    latent_spatial_size : tuple[int, int]
        (Y, X) size of the latent feature map.
    out_channels : int
        Output channels.
    out_stack_depth : int
        Output Z slices.
    strides : Sequence[int]
        Upsampling factor of each stage.
    head_expansion_ratio : int
        Width multiplier of the head.
    head_pool : bool
        Smooth the head's pixel shuffle with average pooling.
    upsample_mode : {"pixelshuffle", "deconv"}
        Stage upsampling.
    conv_blocks : int
        Residual units per stage.
    norm_name : str
        MONAI norm of the residual units.
    upsample_pre_conv : "default", nn.Module or None
        Convolution before each pixel shuffle.
    """

    def __init__(
        self,
        decoder_channels: Sequence[int],
        latent_dim: int,
        latent_spatial_size: Sequence[int],
        out_channels: int,
        out_stack_depth: int,
        strides: Sequence[int],
        head_expansion_ratio: int,
        head_pool: bool,
        upsample_mode: UpsampleMode,
        conv_blocks: int,
        norm_name: str,
        upsample_pre_conv: Literal["default"] | Callable | None,
    ) -> None:
        super().__init__()
        num_pixels = latent_spatial_size[0] * latent_spatial_size[1]
        if latent_dim % num_pixels:
            raise ValueError(
                f"latent_dim={latent_dim} must be divisible by the {num_pixels} pixels of the "
                f"{tuple(latent_spatial_size)} latent feature map."
            )
        self.latent_spatial_size = tuple(latent_spatial_size)
        self.latent_channels = latent_dim // num_pixels
        self.latent_reshape = nn.Linear(latent_dim, self.latent_channels * num_pixels)
        self.latent_proj = nn.Conv2d(self.latent_channels, decoder_channels[0], kernel_size=1)
        self.decoder_stages = nn.ModuleList(
            VaeUpStage(
                decoder_channels[i],
                decoder_channels[i + 1],
                scale_factor=strides[i],
                mode=upsample_mode,
                conv_blocks=conv_blocks,
                norm_name=norm_name,
                upsample_pre_conv=upsample_pre_conv,
            )
            for i in range(len(decoder_channels) - 1)
        )
        self.head = PixelToVoxelHead(
            decoder_channels[-1], out_channels, out_stack_depth, head_expansion_ratio, pool=head_pool
        )

    def forward(self, z: Tensor) -> Tensor:
        """Decode ``(B, latent_dim)`` to ``(B, out_channels, out_stack_depth, Y, X)``."""
        x = self.latent_reshape(z).reshape(z.shape[0], self.latent_channels, *self.latent_spatial_size)
        x = self.latent_proj(x)
        for stage in self.decoder_stages:
            x = stage(x)
        return self.head(x)


@register_model("beta_vae_25d")
class BetaVae25D(nn.Module):
    """Beta-VAE for 2.5D stacks whose reconstruction has the input's shape.

    The encoder reduces XY by ``stem_stride[-1]`` times the backbone's reduction (16 for ResNets, 8 for
    ConvNeXts); the decoder enlarges it by ``2**decoder_stages`` and the head by 4, so these must match.

    Parameters
    ----------
    backbone : str
        timm ConvNeXt or ResNet model name.
    in_channels : int
        Input (and reconstructed) channels.
    in_stack_depth : int
        Input Z slices.
    out_stack_depth : int
        Reconstructed Z slices.
    latent_dim : int
        Latent size.
    input_spatial_size : tuple[int, int]
        Input (Y, X) size.
    stem_kernel_size : tuple[int, int, int]
        Stem kernel in (Z, Y, X).
    stem_stride : tuple[int, int, int]
        Stem stride in (Z, Y, X).
    drop_path_rate : float
        Stochastic depth rate of the backbone.
    decoder_stages : int
        2x upsampling stages of the decoder.
    head_expansion_ratio : int
        Width multiplier of the head.
    head_pool : bool
        Smooth the head's pixel shuffle with average pooling.
    upsample_mode : {"pixelshuffle", "deconv"}
        Decoder upsampling.
    conv_blocks : int
        Residual units per decoder stage.
    norm_name : str
        MONAI norm of the decoder.
    upsample_pre_conv : "default", nn.Module or None
        Convolution before each pixel shuffle.

    Raises
    ------
    ValueError
        If ``decoder_stages`` does not bring the latent map back to ``input_spatial_size`` (the message gives the
        value that does), or the sizes are not divisible as required.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        in_channels: int = 2,
        in_stack_depth: int = 16,
        out_stack_depth: int = 16,
        latent_dim: int = 1024,
        input_spatial_size: Sequence[int] = (256, 256),
        stem_kernel_size: Sequence[int] = (2, 4, 4),
        stem_stride: Sequence[int] = (2, 4, 4),
        drop_path_rate: float = 0.0,
        decoder_stages: int = 4,
        head_expansion_ratio: int = 2,
        head_pool: bool = False,
        upsample_mode: UpsampleMode = "pixelshuffle",
        conv_blocks: int = 2,
        norm_name: str = "batch",
        upsample_pre_conv: Literal["default"] | Callable | None = None,
    ) -> None:
        super().__init__()
        self.encoder = VaeEncoder(
            backbone,
            in_channels,
            in_stack_depth,
            latent_dim,
            input_spatial_size,
            stem_kernel_size,
            stem_stride,
            drop_path_rate,
        )
        head_upsampling = 4
        stage_upsampling, remainder = divmod(self.encoder.reduction, head_upsampling)
        reduction_source = (
            f"the {backbone} encoder with stem stride {stem_stride[-1]} reduces XY by {self.encoder.reduction}"
        )
        if remainder or stage_upsampling & (stage_upsampling - 1):
            raise ValueError(
                f"No number of decoder stages reconstructs the input size: {reduction_source}, which is not "
                f"{head_upsampling} (the head) times a power of 2 (the decoder stages)."
            )
        needed_stages = stage_upsampling.bit_length() - 1
        if decoder_stages != needed_stages:
            raise ValueError(
                f"decoder_stages={decoder_stages} would reconstruct {head_upsampling * 2**decoder_stages}/"
                f"{self.encoder.reduction} of the input size: {reduction_source}, the head enlarges it by "
                f"{head_upsampling} and each decoder stage by 2. Use decoder_stages={needed_stages}."
            )
        last_channels = self.encoder.encoder.feature_info.channels()[-1]
        decoder_channels = [last_channels // 2**i for i in range(decoder_stages)]
        decoder_channels.append((out_stack_depth + 2) * in_channels * 2**2 * head_expansion_ratio)
        self.decoder = VaeDecoder(
            decoder_channels,
            latent_dim,
            self.encoder.latent_spatial_size,
            out_channels=in_channels,
            out_stack_depth=out_stack_depth,
            strides=(2,) * decoder_stages,
            head_expansion_ratio=head_expansion_ratio,
            head_pool=head_pool,
            upsample_mode=upsample_mode,
            conv_blocks=conv_blocks,
            norm_name=norm_name,
            upsample_pre_conv=upsample_pre_conv,
        )

    def forward(self, x: Tensor) -> SimpleNamespace:
        """Return ``SimpleNamespace(recon_x, mean, logvar, z)``; ``recon_x`` has the input's channels and XY."""
        encoded = self.encoder(x)
        recon_x = self.decoder(encoded.z)
        return SimpleNamespace(recon_x=recon_x, mean=encoded.mean, logvar=encoded.log_covariance, z=encoded.z)
