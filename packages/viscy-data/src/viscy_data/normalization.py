"""Normalization metadata stored in OME-Zarr ``.zattrs``.

The layout (written by ``viscy preprocess`` and by :mod:`viscy_data.synthetic`)::

    zattrs["normalization"][channel_name] = {
        "dataset_statistics": {stat: float, ...},          # plate and positions
        "fov_statistics": {stat: float, ...},              # positions only
        "timepoint_statistics": {"0": {stat: float}, ...}, # plate: all FOVs; position: this FOV
    }

Readers accept any subset of the levels, never mutate what they read, and return ``None``
when a node carries no normalization metadata.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, Protocol

import numpy as np
import torch

__all__ = [
    "NORMALIZATION_FIELD",
    "STATISTIC_NAMES",
    "compute_statistics",
    "read_norm_meta",
    "select_timepoint",
    "write_meta_field",
]

NORMALIZATION_FIELD = "normalization"
"""Top-level ``.zattrs`` key holding normalization metadata."""

_PERCENTILES = (1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0)

STATISTIC_NAMES = ("mean", "std", "median", "iqr", "min", "max", "p1", "p5", "p95", "p99", "p99_p1", "p95_p5")
"""Names of the statistics :func:`compute_statistics` returns, in order."""


class ZattrsNode(Protocol):
    """Anything with OME-Zarr attributes, such as an iohub ``Plate`` or ``Position``."""

    @property
    def zattrs(self) -> MutableMapping[str, Any]:
        """The node's attributes."""


def compute_statistics(values: np.ndarray) -> dict[str, float]:
    """Summarize pixel values for normalization, ignoring NaNs.

    Parameters
    ----------
    values : np.ndarray
        Pixel values of any shape.

    Returns
    -------
    dict[str, float]
        The statistics named in :data:`STATISTIC_NAMES` as Python floats:
        ``median`` is the 50th percentile, ``iqr`` is p75 - p25, ``p99_p1`` is p99 - p1
        and ``p95_p5`` is p95 - p5.

    Raises
    ------
    ValueError
        If ``values`` holds no finite value.
    """
    flat = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(flat).any():
        raise ValueError(f"Cannot compute normalization statistics of {flat.size} values with no finite value.")
    p1, p5, p25, p50, p75, p95, p99 = (float(v) for v in np.nanpercentile(flat, _PERCENTILES))
    return {
        "mean": float(np.nanmean(flat)),
        "std": float(np.nanstd(flat)),
        "median": p50,
        "iqr": p75 - p25,
        "min": float(np.nanmin(flat)),
        "max": float(np.nanmax(flat)),
        "p1": p1,
        "p5": p5,
        "p95": p95,
        "p99": p99,
        "p99_p1": p99 - p1,
        "p95_p5": p95 - p5,
    }


def write_meta_field(node: ZattrsNode, metadata: Mapping[str, Any], field_name: str, subfield_name: str) -> None:
    """Merge ``metadata`` into ``node.zattrs[field_name][subfield_name]``.

    Missing levels are created; existing keys of the subfield are kept unless ``metadata``
    replaces them. Works for plates and positions alike.

    Parameters
    ----------
    node : ZattrsNode
        Plate or position opened for writing.
    metadata : Mapping[str, Any]
        JSON-serializable values to merge in.
    field_name : str
        Top-level attribute, e.g. ``"normalization"``.
    subfield_name : str
        Second-level key, e.g. a channel name.
    """
    field = dict(node.zattrs.get(field_name, {}))
    subfield = dict(field.get(subfield_name, {}))
    subfield.update(metadata)
    field[subfield_name] = subfield
    node.zattrs[field_name] = field


def _to_tensors(tree: Mapping[str, Any]) -> dict[str, Any]:
    """Copy a nested mapping, turning every numeric leaf into a float32 scalar tensor."""
    return {
        key: _to_tensors(value) if isinstance(value, Mapping) else torch.tensor(value, dtype=torch.float32)
        for key, value in tree.items()
    }


def read_norm_meta(node: ZattrsNode) -> dict[str, dict[str, Any]] | None:
    """Read a node's normalization metadata as float32 tensors.

    Parameters
    ----------
    node : ZattrsNode
        Plate or position.

    Returns
    -------
    dict or None
        ``{channel: {level: {stat: Tensor}}}``, where the ``timepoint_statistics`` level has
        one more level keyed by the time index as a string. A fresh copy: changing it does
        not change the store's attributes. ``None`` when the node has no metadata.
    """
    metadata = node.zattrs.get(NORMALIZATION_FIELD)
    if not metadata:
        return None
    return _to_tensors(metadata)


TIMEPOINT_LEVEL = "timepoint_statistics"
"""Level holding per-time-point statistics, keyed by the time index as a string."""


def select_timepoint(norm_meta: Mapping[str, Mapping[str, Any]] | None, t: int) -> dict[str, dict[str, Any]] | None:
    """Resolve the time-point level of normalization metadata to one time point.

    Parameters
    ----------
    norm_meta : Mapping or None
        ``{channel: {level: ...}}`` as returned by :func:`read_norm_meta`.
    t : int
        Time index of the sample.

    Returns
    -------
    dict or None
        A new ``{channel: {level: {stat: value}}}`` whose ``timepoint_statistics`` holds the
        statistics of time point ``t`` (the level is left out for channels without them);
        the other levels are shared, not copied. ``None`` when ``norm_meta`` is ``None``.
    """
    if norm_meta is None:
        return None
    resolved = {}
    for channel, levels in norm_meta.items():
        channel_levels = {level: stats for level, stats in levels.items() if level != TIMEPOINT_LEVEL}
        timepoint = levels.get(TIMEPOINT_LEVEL, {}).get(str(t))
        if timepoint is not None:
            channel_levels[TIMEPOINT_LEVEL] = timepoint
        resolved[channel] = channel_levels
    return resolved
