"""U-Net family: UNeXt2, FCMAE, 2D and 2.5D U-Nets."""

# Importing a module registers its model; list_models() follows the order of these imports.
from viscy_models.unet.unext2 import UNeXt2

# isort: split
from viscy_models.unet.fcmae import FullyConvolutionalMAE
from viscy_models.unet.unet2d import Unet2d
from viscy_models.unet.unet25d import Unet25d

__all__ = ["UNeXt2", "FullyConvolutionalMAE", "Unet2d", "Unet25d"]
