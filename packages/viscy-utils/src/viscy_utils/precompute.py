"""Precompute normalized float16 image stacks for fast training-time loading."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import dask.array as da
import numpy as np

from viscy_data.ome_compat import fov_name, open_ome_zarr
from viscy_data.select import filter_fovs, filter_wells

__all__ = ["precompute_array"]

_logger = logging.getLogger(__name__)

Subtrahend = Literal["mean"] | float
Divisor = Literal["std"] | tuple[float, float]


def _validate_normalization(channel: str, subtrahend: Subtrahend, divisor: Divisor) -> None:
    """Check one channel's normalization recipe, naming the valid forms on failure."""
    if not (subtrahend == "mean" or (isinstance(subtrahend, int | float) and 0 <= subtrahend <= 100)):
        raise ValueError(
            f"Subtrahend of channel {channel!r} must be 'mean' or a percentile in [0, 100], got {subtrahend!r}."
        )
    valid_pair = (
        isinstance(divisor, Sequence)
        and not isinstance(divisor, str)
        and len(divisor) == 2
        and 0 <= divisor[0] < divisor[1] <= 100
    )
    if not (divisor == "std" or valid_pair):
        raise ValueError(
            f"Divisor of channel {channel!r} must be 'std' or a (low, high) percentile pair with "
            f"0 <= low < high <= 100, got {divisor!r}."
        )


def _normalize_image(image: da.Array, subtrahend: Subtrahend, divisor: Divisor, eps: float = 1e-6) -> da.Array:
    """Normalize one channel: ``(image - subtrahend) / max(divisor, eps)``.

    ``subtrahend`` is ``"mean"`` or a percentile of the image; ``divisor`` is ``"std"`` or the
    spread between two percentiles (estimated chunk-wise by :func:`dask.array.percentile`).
    The divisor is floored at ``eps`` so that a constant image does not blow up.
    """
    flat = image.ravel().astype(np.float64)
    wanted = [] if subtrahend == "mean" else [float(subtrahend)]
    if divisor != "std":
        wanted += [float(divisor[0]), float(divisor[1])]
    # dask.array.percentile expects increasing percentiles
    levels = sorted(set(wanted))
    values = dict(zip(levels, da.percentile(flat, levels).compute(), strict=True)) if levels else {}
    offset = float(flat.mean().compute()) if subtrahend == "mean" else float(values[float(subtrahend)])
    if divisor == "std":
        scale = float(flat.std().compute())
    else:
        scale = float(values[float(divisor[1])] - values[float(divisor[0])])
    return (image - offset) / max(scale, eps)


def precompute_array(
    data_path: str | Path,
    output_path: str | Path,
    channel_names: Sequence[str],
    subtrahends: Sequence[Subtrahend],
    divisors: Sequence[Divisor],
    image_array_key: str = "0",
    include_wells: Sequence[str] | None = None,
    exclude_fovs: Sequence[str] | None = None,
    overwrite: bool = False,
) -> None:
    """Normalize the selected channels well by well and save them as a NumPy stack.

    Every FOV of a well must have the same shape. The result, shaped
    ``(F, T, C, Z, Y, X)`` with FOVs of all selected wells concatenated, is stored as float16
    with one ``.npy`` file per FOV (:func:`dask.array.to_npy_stack`); read it back with
    :func:`dask.array.from_npy_stack`.

    Parameters
    ----------
    data_path : str or Path
        HCS OME-Zarr plate.
    output_path : str or Path
        Directory to write.
    channel_names : sequence of str
        Channels to keep, in output order.
    subtrahends : sequence of {"mean"} or float
        Per channel: ``"mean"`` or a percentile to subtract.
    divisors : sequence of {"std"} or (float, float)
        Per channel: ``"std"`` or a (low, high) percentile pair whose spread divides.
    image_array_key : str
        Array inside each position.
    include_wells : sequence of str, optional
        Wells to keep (``"A/1"``); all when None.
    exclude_fovs : sequence of str, optional
        FOVs to drop (``"A/1/0"``).
    overwrite : bool
        Replace an existing ``output_path``.

    Raises
    ------
    FileExistsError
        If ``output_path`` exists and ``overwrite`` is False.
    ValueError
        On unknown channels, wells or FOVs, mismatched list lengths or invalid recipes.
    """
    output_path = Path(output_path)
    if output_path.exists() and not overwrite:
        raise FileExistsError(f"{output_path} exists; pass overwrite=True to replace it.")
    if not len(channel_names) == len(subtrahends) == len(divisors):
        raise ValueError(
            f"channel_names, subtrahends and divisors need one entry per channel, got "
            f"{len(channel_names)}, {len(subtrahends)} and {len(divisors)}."
        )
    for channel, subtrahend, divisor in zip(channel_names, subtrahends, divisors, strict=True):
        _validate_normalization(channel, subtrahend, divisor)
    with open_ome_zarr(data_path, layout="hcs", mode="r") as plate:
        present = list(plate.channel_names)
        missing = [name for name in channel_names if name not in present]
        if missing:
            raise ValueError(f"Channels {missing} not found in {data_path}; channels present: {present}.")
        channel_ids = [present.index(name) for name in channel_names]
        normalized_wells = []
        for well in filter_wells(plate, include_wells):
            positions = list(filter_fovs(well, exclude_fovs))
            if not positions:
                continue
            arrays = [position[image_array_key] for position in positions]
            stack = da.stack([da.from_array(array, chunks=array.chunks)[:, channel_ids] for array in arrays])
            channels = [
                _normalize_image(stack[:, :, c], subtrahend, divisor)
                for c, (subtrahend, divisor) in enumerate(zip(subtrahends, divisors, strict=True))
            ]
            normalized_wells.append(da.stack(channels, axis=2))
            _logger.info("Normalized well %s (%d FOVs)", fov_name(positions[0]).rsplit("/", 1)[0], len(positions))
        if not normalized_wells:
            raise ValueError(f"No FOV of {data_path} is left after include_wells and exclude_fovs.")
        result = da.concatenate(normalized_wells, axis=0).astype(np.float16)
        result = result.rechunk((1, -1, -1, -1, -1, -1))
        if output_path.exists():
            shutil.rmtree(output_path)
        da.to_npy_stack(output_path, result, axis=0)
