"""OME-Zarr datasets, samplers and Lightning DataModules for microscopy time-lapse data.

Every public class is importable from the package root (``from viscy_data import
TripletDataModule``). Optional features need extras and fail at first use with the
``pip install 'viscy-data[<extra>]'`` command to run: ``[triplet]`` (tensorstore patch
reads), ``[livecell]`` (pycocotools, tifffile, torchvision) and ``[mmap]`` (tensordict).

Exports are resolved lazily on first access, so ``import viscy_data.synthetic`` does not
pay for Lightning.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("viscy-data")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

_EXPORTS: dict[str, tuple[str, ...]] = {
    "_typing": (
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
    ),
    "select": ("SelectWell",),
    "distributed": ("ShardedDistributedSampler",),
    "sampler": ("FlexibleBatchSampler",),
    "channel_dropout": ("ChannelDropout",),
    "hcs": ("HCSDataModule", "MaskTestDataset", "SlidingWindowDataset"),
    "gpu_aug": ("CachedOmeZarrDataModule", "CachedOmeZarrDataset", "GPUTransformDataModule"),
    "mmap_cache": ("MmappedDataModule", "MmappedDataset"),
    "triplet": ("TripletDataModule", "TripletDataset"),
    "cell_division_triplet": ("CellDivisionTripletDataModule", "CellDivisionTripletDataset"),
    "cell_classification": ("ClassificationDataModule", "ClassificationDataset"),
    "ctmc_v1": ("CTMCv1DataModule",),
    "livecell": ("LiveCellDataModule", "LiveCellDataset", "LiveCellTestDataset"),
    "segmentation": ("SegmentationDataModule", "SegmentationDataset"),
    "combined": (
        "BatchedConcatDataModule",
        "BatchedConcatDataset",
        "CachedConcatDataModule",
        "CombinedDataModule",
        "CombineMode",
        "ConcatDataModule",
    ),
}
"""Module (under ``viscy_data``) to the public names it defines: the one list of the package's exports."""
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    """Import the module of a public name on first access."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'viscy_data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"viscy_data.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE_OF])


__all__ = list(_MODULE_OF)
