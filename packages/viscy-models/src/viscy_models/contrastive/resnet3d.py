"""3D ResNet contrastive encoder built on MONAI's ResNetFeatures."""

from monai.networks.nets.resnet import ResNetFeatures, resnet_params
from torch import Tensor, nn

from viscy_models._registry import register_model
from viscy_models.contrastive.projection import projection_mlp


@register_model("resnet3d_encoder")
class ResNet3dEncoder(nn.Module):
    """Fully 3D ResNet encoder (MONAI, optionally MedicalNet-pretrained) with a projection MLP.

    Parameters
    ----------
    backbone : str
        MONAI ResNet name: ``"resnet10"`` to ``"resnet200"``.
    in_channels : int
        Input channels.
    embedding_dim : int
        Embedding size; must equal the backbone's output channels (512 for resnet10/18/34, 2048 for
        resnet50 and deeper).
    projection_dim : int
        Output size of the projection MLP.
    pretrained : bool
        Load MedicalNet weights (downloads; only for ``in_channels=1``).

    Raises
    ------
    ValueError
        If ``backbone`` is unknown (the message lists the names) or ``embedding_dim`` does not match it.
    """

    def __init__(
        self,
        backbone: str,
        in_channels: int = 1,
        embedding_dim: int = 512,
        projection_dim: int = 128,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        if backbone not in resnet_params:
            raise ValueError(
                f"ResNet3dEncoder does not support backbone {backbone!r}; choose one of {tuple(resnet_params)}."
            )
        self.encoder = ResNetFeatures(backbone, pretrained=pretrained, spatial_dims=3, in_channels=in_channels)
        backbone_channels = self.encoder.in_planes
        if embedding_dim != backbone_channels:
            raise ValueError(
                f"embedding_dim={embedding_dim} does not match the {backbone} output channels {backbone_channels}; "
                f"use embedding_dim={backbone_channels}."
            )
        self.projection = projection_mlp(embedding_dim, embedding_dim, projection_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(embedding (B, embedding_dim), projection (B, projection_dim))`` for ``(B, C, D, H, W)``."""
        feature_map = self.encoder(x)[-1]
        embedding = self.encoder.avgpool(feature_map).flatten(1)
        return embedding, self.projection(embedding)
