"""OME-Zarr datasets, samplers and Lightning DataModules for microscopy time-lapse data.

Every public class is importable from the package root (``from viscy_data import
TripletDataModule``). Optional features need extras and fail at first use with the
``pip install 'viscy-data[<extra>]'`` command to run: ``[triplet]`` (tensorstore patch
reads), ``[livecell]`` (pycocotools, tifffile, torchvision) and ``[mmap]`` (tensordict).
"""

from importlib.metadata import PackageNotFoundError, version

from viscy_data._typing import (
    INDEX_COLUMNS,
    LABEL_CELL_CYCLE_STATE,
    LABEL_CELL_DIVISION_STATE,
    LABEL_CELL_REMODELING_STATE,
    LABEL_INFECTION_STATE,
    AnnotationColumns,
    ChannelMap,
    ChannelNormStats,
    DictTransform,
    HCSStackIndex,
    LevelNormStats,
    NormMeta,
    OneOrSeq,
    Sample,
    SegmentationSample,
    TrackingIndex,
    TripletSample,
)
from viscy_data.cell_classification import ClassificationDataModule, ClassificationDataset
from viscy_data.cell_division_triplet import CellDivisionTripletDataModule, CellDivisionTripletDataset
from viscy_data.combined import (
    BatchedConcatDataModule,
    BatchedConcatDataset,
    CachedConcatDataModule,
    CombinedDataModule,
    CombineMode,
    ConcatDataModule,
)
from viscy_data.ctmc_v1 import CTMCv1DataModule
from viscy_data.distributed import ShardedDistributedSampler
from viscy_data.gpu_aug import CachedOmeZarrDataModule, CachedOmeZarrDataset, GPUTransformDataModule
from viscy_data.hcs import HCSDataModule, MaskTestDataset, SlidingWindowDataset
from viscy_data.livecell import LiveCellDataModule, LiveCellDataset, LiveCellTestDataset
from viscy_data.mmap_cache import MmappedDataModule, MmappedDataset
from viscy_data.segmentation import SegmentationDataModule, SegmentationDataset
from viscy_data.select import SelectWell
from viscy_data.triplet import TripletDataModule, TripletDataset

try:
    __version__ = version("viscy-data")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    # types and label maps
    "AnnotationColumns",
    "ChannelMap",
    "ChannelNormStats",
    "DictTransform",
    "HCSStackIndex",
    "INDEX_COLUMNS",
    "LABEL_CELL_CYCLE_STATE",
    "LABEL_CELL_DIVISION_STATE",
    "LABEL_CELL_REMODELING_STATE",
    "LABEL_INFECTION_STATE",
    "LevelNormStats",
    "NormMeta",
    "OneOrSeq",
    "Sample",
    "SegmentationSample",
    "TrackingIndex",
    "TripletSample",
    # selection and sampling
    "SelectWell",
    "ShardedDistributedSampler",
    # virtual staining
    "HCSDataModule",
    "MaskTestDataset",
    "SlidingWindowDataset",
    # GPU augmentation and caching
    "CachedOmeZarrDataModule",
    "CachedOmeZarrDataset",
    "GPUTransformDataModule",
    "MmappedDataModule",
    "MmappedDataset",
    # contrastive learning
    "TripletDataModule",
    "TripletDataset",
    "CellDivisionTripletDataModule",
    "CellDivisionTripletDataset",
    # classification, segmentation and external datasets
    "ClassificationDataModule",
    "ClassificationDataset",
    "CTMCv1DataModule",
    "LiveCellDataModule",
    "LiveCellDataset",
    "LiveCellTestDataset",
    "SegmentationDataModule",
    "SegmentationDataset",
    # combining data modules
    "BatchedConcatDataModule",
    "BatchedConcatDataset",
    "CachedConcatDataModule",
    "CombinedDataModule",
    "CombineMode",
    "ConcatDataModule",
]
