"""Building blocks shared by the models: stems, heads, decoder blocks and 2D/3D convolution blocks."""

from viscy_models.components.blocks import UNeXt2Decoder, UNeXt2UpStage, convnext_decoder_stage
from viscy_models.components.conv_block_2d import ConvBlock2D
from viscy_models.components.conv_block_3d import ConvBlock3D
from viscy_models.components.heads import PixelToVoxelHead, PixelToVoxelShuffleHead, UnsqueezeHead
from viscy_models.components.init import icnr_init, init_convnext_weights
from viscy_models.components.stems import StemDepthtoChannels, UNeXt2Stem

__all__ = [
    "ConvBlock2D",
    "ConvBlock3D",
    "UNeXt2Stem",
    "StemDepthtoChannels",
    "PixelToVoxelHead",
    "PixelToVoxelShuffleHead",
    "UnsqueezeHead",
    "icnr_init",
    "init_convnext_weights",
    "UNeXt2UpStage",
    "UNeXt2Decoder",
    "convnext_decoder_stage",
]
