"""Batched GPU and per-sample MONAI-style augmentation and normalization transforms for microscopy volumes.

Batched transforms (``Batched*``) take whole (B, C, Z, Y, X) mini-batches on any device and draw
their random parameters per sample; the ``d``-suffixed versions apply one draw to all their keys.
"""

from importlib.metadata import PackageNotFoundError, version

from viscy_transforms._affine import BatchedRandAffined
from viscy_transforms._contrast import BatchedRandAdjustContrast, BatchedRandAdjustContrastd
from viscy_transforms._crop import (
    BatchedCenterSpatialCrop,
    BatchedCenterSpatialCropd,
    BatchedRandSpatialCrop,
    BatchedRandSpatialCropd,
)
from viscy_transforms._decollate import Decollate
from viscy_transforms._elastic import BatchedRand3DElasticd
from viscy_transforms._flip import BatchedRandFlip, BatchedRandFlipd
from viscy_transforms._histogram_shift import BatchedRandHistogramShiftd
from viscy_transforms._invert import RandInvertIntensityd
from viscy_transforms._monai_wrappers import (
    CenterSpatialCropd,
    Decollated,
    NormalizeIntensityd,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandSpatialCropd,
    RandWeightedCropd,
    ScaleIntensityRangePercentilesd,
    ToDeviced,
)
from viscy_transforms._noise import (
    BatchedRandGaussianNoise,
    BatchedRandGaussianNoised,
    RandGaussianNoiseTensor,
    RandGaussianNoiseTensord,
)
from viscy_transforms._normalize import NormalizeSampled
from viscy_transforms._percentile import (
    BatchedScaleIntensityRangePercentiles,
    BatchedScaleIntensityRangePercentilesd,
)
from viscy_transforms._pixel_shuffle import BatchedRandLocalPixelShufflingd
from viscy_transforms._scale_intensity import BatchedRandScaleIntensity, BatchedRandScaleIntensityd
from viscy_transforms._sharpen import BatchedRandSharpend
from viscy_transforms._smooth import BatchedRandGaussianSmooth, BatchedRandGaussianSmoothd
from viscy_transforms._stack_channels import StackChannelsd
from viscy_transforms._tiled_crop import TiledSpatialCropSamplesd
from viscy_transforms._zoom import BatchedZoom, BatchedZoomd
from viscy_transforms._zstack import BatchedRandZStackShiftd

try:
    __version__ = version("viscy-transforms")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    # crops
    "BatchedCenterSpatialCrop",
    "BatchedCenterSpatialCropd",
    "BatchedRandSpatialCrop",
    "BatchedRandSpatialCropd",
    "TiledSpatialCropSamplesd",
    # intensity
    "BatchedRandAdjustContrast",
    "BatchedRandAdjustContrastd",
    "BatchedRandScaleIntensity",
    "BatchedRandScaleIntensityd",
    "BatchedRandGaussianNoise",
    "BatchedRandGaussianNoised",
    "RandGaussianNoiseTensor",
    "RandGaussianNoiseTensord",
    "BatchedRandGaussianSmooth",
    "BatchedRandGaussianSmoothd",
    "BatchedRandHistogramShiftd",
    "BatchedRandSharpend",
    "RandInvertIntensityd",
    # normalization
    "BatchedScaleIntensityRangePercentiles",
    "BatchedScaleIntensityRangePercentilesd",
    "NormalizeSampled",
    # spatial
    "BatchedRandAffined",
    "BatchedRand3DElasticd",
    "BatchedRandFlip",
    "BatchedRandFlipd",
    "BatchedRandLocalPixelShufflingd",
    "BatchedRandZStackShiftd",
    "BatchedZoom",
    "BatchedZoomd",
    # utility
    "Decollate",
    "StackChannelsd",
    # MONAI wrappers with explicit signatures
    "CenterSpatialCropd",
    "Decollated",
    "NormalizeIntensityd",
    "RandAdjustContrastd",
    "RandAffined",
    "RandFlipd",
    "RandGaussianNoised",
    "RandGaussianSmoothd",
    "RandScaleIntensityd",
    "RandSpatialCropd",
    "RandWeightedCropd",
    "ScaleIntensityRangePercentilesd",
    "ToDeviced",
]
