"""Types shared by the transforms: sample dictionaries and normalization metadata (private).

viscy-transforms does not depend on viscy-data, so these are copies of the definitions in
``viscy_data._typing``, the source of truth; ``tests/test_typing.py`` fails when they differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, NotRequired, TypeVar

from torch import Tensor
from typing_extensions import TypedDict

T = TypeVar("T")

OneOrSeq = T | Sequence[T]


class LevelNormStats(TypedDict, total=False):
    """Statistics of one channel at one level; every value is a tensor of shape ``()`` or ``(B,)``."""

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
    """Statistics of one channel, keyed by level."""

    dataset_statistics: LevelNormStats
    fov_statistics: LevelNormStats
    timepoint_statistics: LevelNormStats


NormMeta = dict[str, ChannelNormStats]


class HCSStackIndex(NamedTuple):
    """Where a stack comes from in an HCS plate."""

    image: str
    time: int
    z: int


class Sample(TypedDict, total=False):
    """A sample (or a collated batch) as produced by the data modules."""

    index: HCSStackIndex
    source: OneOrSeq[Tensor]
    target: OneOrSeq[Tensor]
    weight: OneOrSeq[Tensor]
    labels: OneOrSeq[Tensor]
    norm_meta: NormMeta | None


class ChannelMap(TypedDict):
    """Which channel names are stacked into the ``source`` and ``target`` entries."""

    source: OneOrSeq[str]
    target: NotRequired[OneOrSeq[str]]
