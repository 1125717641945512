"""The one place that knows how iohub 0.2 (zarr 2) and iohub 0.3 (zarr 3) differ.

iohub 0.2.x (the only release on Python 3.11) writes OME-Zarr 0.4 on zarr-python 2, and its
``ImageArray`` *is* a ``zarr.Array``. iohub 0.3.x (Python 3.12+) writes OME-Zarr 0.4 (zarr
format 2) or 0.5 (zarr format 3, OME metadata under ``"ome"``) through pluggable zarr
implementations; its ``ImageArray`` wraps the native array and has no ``tensorstore()``.
Everything else in viscy-data goes through the helpers below.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable
from importlib.metadata import version as _distribution_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iohub.ngff import open_ome_zarr as _iohub_open_ome_zarr

from viscy_data._optional import import_optional

if TYPE_CHECKING:
    from iohub.ngff import ImageArray, Plate, Position
    from iohub.ngff.models import AxisMeta

__all__ = [
    "IOHUB_GENERATION",
    "SUPPORTED_OME_VERSIONS",
    "array_name",
    "array_store_path",
    "array_zarr_format",
    "fov_name",
    "open_ome_zarr",
    "open_tensorstore",
    "tczyx_axes",
    "TensorstoreCache",
    "tensorstore_context",
]


_IOHUB_VERSION = _distribution_version("iohub")


def _iohub_generation() -> tuple[int, int]:
    major, minor = _IOHUB_VERSION.split(".")[:2]
    return int(major), int(minor)


IOHUB_GENERATION: tuple[int, int] = _iohub_generation()
"""``(major, minor)`` of the installed iohub, e.g. ``(0, 2)``."""

_IOHUB_03 = IOHUB_GENERATION >= (0, 3)

SUPPORTED_OME_VERSIONS: tuple[str, ...] = ("0.4", "0.5") if _IOHUB_03 else ("0.4",)
"""OME-Zarr versions the installed iohub can write: 0.5 (zarr format 3) needs iohub >= 0.3."""

_ZARR_PYTHON = "zarr-python"
"""iohub 0.3 implementation pinned here: the default zarrs pipeline has mis-read sharded rank-5 arrays."""


def open_ome_zarr(store_path: str | Path, layout: str = "auto", mode: str = "r", **kwargs: Any) -> Plate | Position:
    """Open an OME-Zarr store with iohub, on either iohub generation.

    Parameters
    ----------
    store_path : str or Path
        Path of the store.
    layout : str
        ``"auto"``, ``"hcs"`` or ``"fov"``.
    mode : str
        ``"r"``, ``"r+"``, ``"a"``, ``"w"`` or ``"w-"``.
    **kwargs
        Passed to :func:`iohub.ngff.open_ome_zarr` (``channel_names``, ``version``, ``axes``...).
        A new HCS plate gets :func:`tczyx_axes` unless ``axes`` is given.

    Returns
    -------
    Plate or Position
        The iohub node.

    Raises
    ------
    ValueError
        If ``version`` is given and the installed iohub cannot write it.
    """
    version = kwargs.get("version")
    if version is not None and version not in SUPPORTED_OME_VERSIONS:
        raise ValueError(
            f"OME-Zarr version {version!r} is not supported by iohub {_IOHUB_VERSION}; "
            f"choose one of {list(SUPPORTED_OME_VERSIONS)} (0.5 needs iohub >= 0.3, Python >= 3.12)."
        )
    if _IOHUB_03:
        kwargs.setdefault("implementation", _ZARR_PYTHON)
    if layout == "hcs" and mode in ("w", "w-"):
        # iohub 0.3 looks up the axes of a new plate's first position, which does not exist yet,
        # and warns "Cannot read first position metadata" unless they are given
        kwargs.setdefault("axes", tczyx_axes())
    return _iohub_open_ome_zarr(store_path, layout=layout, mode=mode, **kwargs)


def tczyx_axes() -> list[AxisMeta]:
    """Return the (T, C, Z, Y, X) axes that iohub gives a new store by default (seconds, micrometers).

    Returns
    -------
    list of AxisMeta
        Time, channel and three space axes.
    """
    from iohub.ngff.models import ChannelAxisMeta, SpaceAxisMeta, TimeAxisMeta

    space = [SpaceAxisMeta(name=name, unit="micrometer") for name in "ZYX"]
    return [TimeAxisMeta(name="T", unit="second"), ChannelAxisMeta(name="C"), *space]


def fov_name(position: Position) -> str:
    """Name of a position inside its plate, e.g. ``"A/1/0"``."""
    return position.zgroup.name.strip("/")


def array_name(image_array: ImageArray) -> str:
    """Zarr path of an image array with a leading slash, e.g. ``"/A/1/0/0"``."""
    return "/" + str(image_array.path).strip("/")


def _native(image_array: ImageArray) -> Any:
    """Return the zarr-python array behind an iohub image array."""
    return image_array.native if _IOHUB_03 else image_array


def array_store_path(image_array: ImageArray) -> Path:
    """Filesystem directory of an image array, e.g. ``/data/plate.zarr/A/1/0/0``."""
    native = _native(image_array)
    root = native.store.root if _IOHUB_03 else native.store.path
    return Path(root) / str(native.path).strip("/")


def array_zarr_format(image_array: ImageArray) -> int:
    """Zarr format (2 or 3) of an image array."""
    return int(_native(image_array).metadata.zarr_format) if _IOHUB_03 else 2


def open_tensorstore(image_array: ImageArray, context: Any = None) -> Any:
    """Open an image array read-only with tensorstore.

    Works for zarr format 2 (``zarr`` driver) and 3 (``zarr3`` driver) alike; the data is
    assumed immutable while it is read, so cached chunks are checked only at open.

    Parameters
    ----------
    image_array : ImageArray
        Array of a position opened with iohub.
    context : tensorstore.Context, optional
        Shared resources (cache pool, copy concurrency).

    Returns
    -------
    tensorstore.TensorStore
        Read-only handle to the array.

    Raises
    ------
    ImportError
        If tensorstore (the ``[triplet]`` extra) is missing.
    """
    ts = import_optional("tensorstore", extra="triplet", feature="tensorstore patch reads")
    driver = "zarr3" if array_zarr_format(image_array) == 3 else "zarr"
    spec = {
        "driver": driver,
        "kvstore": {"driver": "file", "path": str(array_store_path(image_array))},
        "recheck_cached_data": "open",
    }
    return ts.open(spec, read=True, write=False, context=context or ts.Context()).result()


def tensorstore_context(cache_pool_bytes: int = 0) -> Any:
    """Tensorstore resources for patch reads: copy concurrency and a chunk cache.

    Parameters
    ----------
    cache_pool_bytes : int
        Size of the shared chunk cache in bytes (0: no cache).

    Returns
    -------
    tensorstore.Context
        ``data_copy_concurrency`` from ``SLURM_CPUS_PER_TASK`` or the CPU count.

    Raises
    ------
    ImportError
        If tensorstore (the ``[triplet]`` extra) is missing.
    """
    ts = import_optional("tensorstore", extra="triplet", feature="tensorstore patch reads")
    concurrency = int(os.environ.get("SLURM_CPUS_PER_TASK") or os.cpu_count() or 4)
    return ts.Context(
        {
            "data_copy_concurrency": {"limit": concurrency},
            "cache_pool": {"total_bytes_limit": cache_pool_bytes},
        }
    )


class TensorstoreCache:
    """Read-only tensorstores of image arrays, opened once per key and shared by the reading threads.

    Key each array by its store path and FOV (e.g. :func:`array_store_path`): FOV names repeat
    across plates. All stores share one :func:`tensorstore_context`. A pickled cache (sent to a
    worker process) arrives empty and reopens what it needs.

    Parameters
    ----------
    cache_pool_bytes : int
        Size of the shared chunk cache in bytes (0: no cache).
    """

    def __init__(self, cache_pool_bytes: int = 0) -> None:
        self.cache_pool_bytes = int(cache_pool_bytes)
        self._context: Any = None
        self._stores: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, image_array: ImageArray) -> Any:
        """Return the store of ``image_array``, opening it on first use.

        Parameters
        ----------
        key : Hashable
            Identity of the array, e.g. ``(store path, FOV name)``.
        image_array : ImageArray
            The array, opened with iohub.

        Returns
        -------
        tensorstore.TensorStore
            Read-only handle.

        Raises
        ------
        viscy_data.read_errors.ArrayReadError
            If the array cannot be opened; the message names the store and FOV.
        """
        store = self._stores.get(key)
        if store is None:
            from viscy_data.read_errors import naming_read_errors

            with self._lock:
                store = self._stores.get(key)
                if store is None:
                    if self._context is None:
                        self._context = tensorstore_context(self.cache_pool_bytes)
                    with naming_read_errors(image_array):
                        store = self._stores[key] = open_tensorstore(image_array, context=self._context)
        return store

    def __getstate__(self) -> dict[str, Any]:
        return {"cache_pool_bytes": self.cache_pool_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)
