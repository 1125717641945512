"""Type aliases, sample layouts and label maps shared by the datasets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Literal, NamedTuple, NotRequired, TypedDict, TypeVar

from torch import ShortTensor, Tensor

__all__ = [
    "INDEX_COLUMNS",
    "LABEL_CELL_CYCLE_STATE",
    "LABEL_CELL_DIVISION_STATE",
    "LABEL_CELL_REMODELING_STATE",
    "LABEL_INFECTION_STATE",
    "AnnotationColumns",
    "ChannelMap",
    "ChannelNormStats",
    "DictTransform",
    "HCSStackIndex",
    "LevelNormStats",
    "NormMeta",
    "OneOrSeq",
    "Sample",
    "SegmentationSample",
    "TrackingIndex",
    "TripletSample",
]

T = TypeVar("T")

OneOrSeq = T | Sequence[T]
"""One value or a sequence of them."""

DictTransform = Callable[[dict[str, Tensor | dict]], dict[str, Tensor]]
"""A MONAI-style dictionary transform."""


class LevelNormStats(TypedDict, total=False):
    """Statistics of one level (dataset, FOV or time point) of one channel."""

    mean: Tensor
    std: Tensor
    median: Tensor
    iqr: Tensor
    min: Tensor
    max: Tensor
    p1: Tensor
    p5: Tensor
    p95: Tensor
    p99: Tensor
    p99_p1: Tensor
    p95_p5: Tensor


class ChannelNormStats(TypedDict, total=False):
    """Normalization statistics of one channel.

    In a sample, ``timepoint_statistics`` holds the statistics of the sample's own time
    point; as read from a store, it maps each time point (a string) to its statistics.
    """

    dataset_statistics: LevelNormStats
    fov_statistics: LevelNormStats
    timepoint_statistics: LevelNormStats


NormMeta = dict[str, ChannelNormStats]
"""Channel name to its normalization statistics."""


class HCSStackIndex(NamedTuple):
    """Where a sliding-window sample comes from."""

    image: str
    """Zarr path of the image array with a leading slash, e.g. ``"/A/1/0/0"``."""
    time: int
    z: int
    """First slice of the Z window."""


class Sample(TypedDict, total=False):
    """A virtual-staining sample: source and target stacks with their provenance."""

    index: HCSStackIndex
    source: OneOrSeq[Tensor]
    target: OneOrSeq[Tensor]
    weight: OneOrSeq[Tensor]
    labels: OneOrSeq[Tensor]
    norm_meta: NormMeta | None


class SegmentationSample(TypedDict):
    """A predicted and a ground-truth segmentation of one FOV and time point."""

    pred: ShortTensor
    target: ShortTensor
    position_idx: OneOrSeq[int]
    time_idx: OneOrSeq[int]


class ChannelMap(TypedDict):
    """Source (input) and optional target channel names."""

    source: OneOrSeq[str]
    target: NotRequired[OneOrSeq[str]]


class TrackingIndex(TypedDict):
    """Identity of a tracked cell."""

    fov_name: OneOrSeq[str]
    id: OneOrSeq[int]


class TripletSample(TypedDict):
    """Anchor, positive and negative patches of contrastive learning.

    ``lineage`` (training batches) is the ``(B,)`` int64 code of each anchor's lineage, the cells
    its positive may come from: rows of one lineage are not negatives of one another.
    """

    anchor: Tensor
    positive: NotRequired[Tensor]
    negative: NotRequired[Tensor]
    lineage: NotRequired[Tensor]
    index: NotRequired[TrackingIndex]


AnnotationColumns = Literal["infection_state", "cell_division_state", "cell_remodeling_state", "cell_cycle_state"]
"""Annotation columns a classifier can be trained on."""

LABEL_INFECTION_STATE = MappingProxyType({"uninfected": 0, "infected": 1, "unknown": -1})
"""Infection state name to label (immutable)."""

LABEL_CELL_DIVISION_STATE = MappingProxyType({"interphase": 0, "mitosis": 1, "unknown": -1})
"""Cell division state name to label (immutable)."""

LABEL_CELL_CYCLE_STATE = MappingProxyType(
    {"G1": 0, "S": 1, "G2": 2, "prophase": 3, "metaphase": 4, "anaphase": 5, "telophase": 6, "unknown": -1}
)
"""Cell cycle state name to label (immutable)."""

LABEL_CELL_REMODELING_STATE = MappingProxyType({"no_remodel": 0, "remodeling": 1, "unknown": -1})
"""Cell remodeling state name to label (immutable)."""

INDEX_COLUMNS = ["fov_name", "track_id", "t", "id", "parent_track_id", "parent_id", "z", "y", "x"]
"""The Ultrack tracking-index columns, in order."""
