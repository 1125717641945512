"""Local copies of OME-Zarr plates, named after the source store so that plates never collide."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

from viscy_data.normalization import NORMALIZATION_FIELD
from viscy_data.ome_compat import open_ome_zarr

__all__ = ["copy_plate_to_cache", "store_cache_dir"]

_logger = logging.getLogger(__name__)


def store_cache_dir(store_path: str | Path, root: str | Path) -> Path:
    """Cache directory of one store: ``root/($SLURM_JOB_ID or viscy_cache)/<hash of the store path>``."""
    digest = hashlib.md5(str(Path(store_path).resolve()).encode(), usedforsecurity=False).hexdigest()[:16]
    return Path(root) / (os.environ.get("SLURM_JOB_ID") or "viscy_cache") / digest


def _completion_marker(destination: Path) -> Path:
    return destination.with_name(destination.name + ".complete")


def copy_plate_to_cache(source: str | Path, destination: str | Path, array_key: str = "0") -> Path:
    """Copy an HCS plate's image array and normalization metadata, unless already copied.

    The copy keeps the source's OME-Zarr version (zarr format), channels, chunks and dtype.
    A marker written after the last FOV tells a complete copy from an interrupted one,
    which is removed and copied again.

    Parameters
    ----------
    source : str or Path
        HCS OME-Zarr plate.
    destination : str or Path
        Path of the copy.
    array_key : str
        Image array to copy from every position.

    Returns
    -------
    Path
        ``destination``.
    """
    source, destination = Path(source).resolve(), Path(destination)
    marker = _completion_marker(destination)
    if marker.exists() and marker.read_text() == str(source):
        _logger.info("Using cached copy %s of %s", destination, source)
        return destination
    if destination.exists():
        _logger.warning("Removing incomplete cache %s", destination)
        shutil.rmtree(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with (
        open_ome_zarr(source, layout="hcs", mode="r") as plate,
        open_ome_zarr(
            destination,
            layout="hcs",
            mode="w-",
            channel_names=list(plate.channel_names),
            axes=plate.axes,
            version=plate.version,
        ) as copy,
    ):
        _copy_normalization(plate, copy)
        positions = list(plate.positions())
        for number, (name, position) in enumerate(positions, start=1):
            row, column, fov = name.strip("/").split("/")
            target = copy.create_position(row, column, fov)
            image = position[array_key]
            copied = target.create_zeros(array_key, shape=image.shape, dtype=image.dtype, chunks=image.chunks)
            for t in range(image.shape[0]):
                copied[t] = image[t]
            _copy_normalization(position, target)
            _logger.info("Cached FOV %s (%d/%d)", name, number, len(positions))
    marker.write_text(str(source))
    return destination


def _copy_normalization(source_node, target_node) -> None:
    metadata = dict(source_node.zattrs).get(NORMALIZATION_FIELD)
    if metadata is not None:
        target_node.zattrs[NORMALIZATION_FIELD] = metadata
