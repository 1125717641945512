"""Normalization metadata of OME-Zarr HCS plates (written by ``viscy preprocess``).

The layout is the one described in :mod:`viscy_data.normalization`::

    plate.zattrs["normalization"][channel] = {
        "dataset_statistics": {...},           # all FOVs, all timepoints
        "timepoint_statistics": {"0": {...}},  # all FOVs, one timepoint
    }
    position.zattrs["normalization"][channel] = {
        "dataset_statistics": {...},           # same as the plate's
        "fov_statistics": {...},               # this FOV, all timepoints
        "timepoint_statistics": {"0": {...}},  # this FOV, one timepoint
    }
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from viscy_data.normalization import NORMALIZATION_FIELD, compute_statistics, write_meta_field
from viscy_data.ome_compat import open_ome_zarr
from viscy_data.read_errors import naming_read_errors
from viscy_utils.progress import ProgressMeter, format_count, format_duration, format_rate

__all__ = ["generate_normalization_metadata", "resolve_channel_ids", "write_meta_field"]

_logger = logging.getLogger(__name__)


@dataclass
class _FovSamples:
    """Grid-sampled pixels of one FOV and their statistics, per processed channel ``k``.

    ``values[k][t]`` is a flat float32 array; ``fov_statistics[k]`` and
    ``timepoint_statistics[k]`` summarize this FOV alone.
    """

    name: str
    values: list[list[np.ndarray]]
    fov_statistics: list[dict[str, float]]
    timepoint_statistics: list[dict[str, dict[str, float]]]


def resolve_channel_ids(channel_ids: int | Sequence[int], channel_names: Sequence[str]) -> list[int]:
    """Validate channel indices against a plate's channels.

    Parameters
    ----------
    channel_ids : int or sequence of int
        ``-1`` for all channels, one index, or a list of indices.
    channel_names : sequence of str
        The plate's channel names.

    Returns
    -------
    list of int
        The channel indices, in the order given.

    Raises
    ------
    ValueError
        If an index is out of range; the message lists the channels present.
    """
    if isinstance(channel_ids, int):
        channel_ids = list(range(len(channel_names))) if channel_ids == -1 else [channel_ids]
    ids = [int(i) for i in channel_ids]
    bad = [i for i in ids if not 0 <= i < len(channel_names)]
    if bad or not ids:
        present = ", ".join(f"{i}={name}" for i, name in enumerate(channel_names))
        raise ValueError(f"Invalid channel indices {bad or ids}; the plate has channels: {present}.")
    return ids


def _timepoint_statistics(per_timepoint: Sequence[np.ndarray]) -> dict[str, dict[str, float]]:
    """Statistics of each timepoint's values, keyed by the time index as a string."""
    return {str(t): compute_statistics(values) for t, values in enumerate(per_timepoint)}


def _read_grid(image: Any, t: int, channel: int, grid_spacing: int) -> np.ndarray:
    """Read every ``grid_spacing``-th pixel in Y and X of one time point and channel (all Z), flattened."""
    with naming_read_errors(image, time_point=t):
        return np.asarray(image[t, channel, :, ::grid_spacing, ::grid_spacing], dtype=np.float32).ravel()


def _sample_fov(name: str, image: Any, channel_ids: Sequence[int], grid_spacing: int) -> _FovSamples:
    """Read every ``grid_spacing``-th pixel in Y and X of each channel (all Z, one T at a time) and summarize it."""
    values = [[_read_grid(image, t, channel, grid_spacing) for t in range(image.frames)] for channel in channel_ids]
    return _FovSamples(
        name=name,
        values=values,
        fov_statistics=[compute_statistics(np.concatenate(per_timepoint)) for per_timepoint in values],
        timepoint_statistics=[_timepoint_statistics(per_timepoint) for per_timepoint in values],
    )


def _wait_printing_progress(futures: Sequence[Future]) -> None:
    """Wait for the FOV reads, printing a line every tenth of them or every minute, whichever comes first."""
    meter = ProgressMeter(len(futures), every_n_steps=math.ceil(len(futures) / 10), every_n_seconds=60.0)
    for future in as_completed(futures):
        future.result()  # a failed read raises now
        if meter.update(1) and meter.steps < meter.total:
            count, rate = format_count(meter.steps, meter.total), format_rate(meter.rates()[0])
            eta = format_duration(meter.eta(meter.total - meter.steps))
            print(f"Reading FOVs {count} | {rate} FOV/s | ETA {eta}", flush=True)
    print(f"Reading FOVs done: {meter.steps} FOVs in {format_duration(meter.elapsed)}", flush=True)


def generate_normalization_metadata(
    zarr_dir: str | Path,
    num_workers: int = 4,
    channel_ids: int | Sequence[int] = -1,
    grid_spacing: int = 32,
) -> None:
    """Compute normalization statistics of an HCS plate and write them into its ``.zattrs``.

    Each FOV is read once, on a grid of every ``grid_spacing``-th pixel in Y and X (all
    timepoints and slices), with FOVs read in parallel. Positions get ``dataset_statistics``,
    their own ``fov_statistics`` and their own per-timepoint statistics; the plate gets
    ``dataset_statistics`` and per-timepoint statistics over all FOVs. Existing statistics of
    the processed channels are replaced; other channels and attributes are kept.

    Parameters
    ----------
    zarr_dir : str or Path
        The HCS OME-Zarr plate, opened for writing.
    num_workers : int
        Number of FOVs read concurrently.
    channel_ids : int or sequence of int
        ``-1`` for all channels, one channel index, or a list of indices.
    grid_spacing : int
        Sampling step in Y and X, in pixels (>= 1).

    Raises
    ------
    ValueError
        If ``grid_spacing`` or ``num_workers`` is not positive, a channel index is out of
        range, or the plate has no positions.
    """
    if grid_spacing < 1:
        raise ValueError(f"grid_spacing must be a positive number of pixels, got {grid_spacing}.")
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}.")
    with open_ome_zarr(zarr_dir, layout="hcs", mode="r+") as plate:
        channel_names = list(plate.channel_names)
        ids = resolve_channel_ids(channel_ids, channel_names)
        positions = dict(plate.positions())
        if not positions:
            raise ValueError(f"The plate {zarr_dir} has no positions.")
        _logger.info(
            "Sampling %d FOVs of %s on a %d-pixel grid for channels %s",
            len(positions),
            zarr_dir,
            grid_spacing,
            [channel_names[i] for i in ids],
        )
        with ThreadPoolExecutor(max_workers=num_workers) as executor:
            futures = [
                executor.submit(_sample_fov, name, position["0"], ids, grid_spacing)
                for name, position in positions.items()
            ]
            _wait_printing_progress(futures)
            fovs = [future.result() for future in futures]
        for k, channel in enumerate(ids):
            channel_name = channel_names[channel]
            per_timepoint: dict[int, list[np.ndarray]] = defaultdict(list)
            for fov in fovs:
                for t, values in enumerate(fov.values[k]):
                    per_timepoint[t].append(values)
            dataset_statistics = compute_statistics(np.concatenate([np.concatenate(fov.values[k]) for fov in fovs]))
            plate_timepoints = [np.concatenate(per_timepoint[t]) for t in sorted(per_timepoint)]
            write_meta_field(
                plate,
                {
                    "dataset_statistics": dataset_statistics,
                    "timepoint_statistics": _timepoint_statistics(plate_timepoints),
                },
                NORMALIZATION_FIELD,
                channel_name,
            )
            for fov in fovs:
                write_meta_field(
                    positions[fov.name],
                    {
                        "dataset_statistics": dataset_statistics,
                        "fov_statistics": fov.fov_statistics[k],
                        "timepoint_statistics": fov.timepoint_statistics[k],
                    },
                    NORMALIZATION_FIELD,
                    channel_name,
                )
            _logger.info("Wrote normalization metadata of channel %r", channel_name)
