"""2.5D contrastive encoder: a depth-folding stem in front of a timm ConvNeXt or ResNet."""

from collections.abc import Sequence

import timm
from torch import Tensor, nn

from viscy_models._backbones import timm_backbone_family
from viscy_models._registry import register_model
from viscy_models.components.stems import StemDepthtoChannels
from viscy_models.contrastive.projection import projection_mlp


@register_model("contrastive_encoder")
class ContrastiveEncoder(nn.Module):
    """Encoder for contrastive learning on ``(B, C, Z, Y, X)`` patches.

    A :class:`~viscy_models.components.StemDepthtoChannels` replaces the backbone's first convolution, the timm
    backbone pools its last feature map into the embedding, and an MLP projects it for the contrastive loss.

    Parameters
    ----------
    backbone : str
        timm ConvNeXt (e.g. ``"convnext_tiny"``, ``"convnextv2_tiny"``) or ResNet (e.g. ``"resnet50"``) model.
    in_channels : int
        Input channels.
    in_stack_depth : int
        Input Z slices.
    stem_kernel_size : tuple[int, int, int]
        Stem kernel in (Z, Y, X).
    stem_stride : tuple[int, int, int]
        Stem stride in (Z, Y, X).
    embedding_dim : int
        Hidden width of the projection MLP. It does not change the embedding, whose size is the backbone's
        ``num_features`` (768 for ConvNeXt-T, 2048 for ResNet-50), exposed as :attr:`embedding_size`; keeping this
        meaning keeps checkpoint shapes of the reference implementation.
    projection_dim : int
        Output size of the projection MLP.
    drop_path_rate : float
        Stochastic depth rate of the backbone.
    pretrained : bool
        Load timm's pretrained backbone weights (downloads from the Hugging Face hub).

    Raises
    ------
    ValueError
        If ``backbone`` is not a timm ConvNeXt or ResNet model (the message lists them), or the stem cannot produce
        the backbone's stem channels.
    """

    def __init__(
        self,
        backbone: str,
        in_channels: int,
        in_stack_depth: int,
        stem_kernel_size: Sequence[int] = (5, 4, 4),
        stem_stride: Sequence[int] = (5, 4, 4),
        embedding_dim: int = 768,
        projection_dim: int = 128,
        drop_path_rate: float = 0.0,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        family = timm_backbone_family(backbone, ("convnext", "resnet"), "ContrastiveEncoder")
        self.backbone = backbone
        encoder = timm.create_model(backbone, pretrained=pretrained, num_classes=0, drop_path_rate=drop_path_rate)
        if family == "convnext":
            stem_channels = encoder.stem[0].out_channels
            encoder.stem[0] = nn.Identity()
        else:
            stem_channels = encoder.bn1.num_features
            encoder.conv1 = nn.Identity()
        self.stem = StemDepthtoChannels(
            in_channels, in_stack_depth, stem_channels, tuple(stem_kernel_size), tuple(stem_stride)
        )
        self.encoder = encoder
        self.embedding_size: int = encoder.num_features
        self.projection = projection_mlp(self.embedding_size, embedding_dim, projection_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(embedding (B, embedding_size), projection (B, projection_dim))`` for ``(B, C, Z, Y, X)``."""
        embedding = self.encoder(self.stem(x))
        return embedding, self.projection(embedding)
