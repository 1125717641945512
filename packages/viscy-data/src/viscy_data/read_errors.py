"""Image read errors that say where they happened: the store, FOV, array and time point.

Every read of image data in viscy-data (zarr reads through iohub, tensorstore patch reads)
and in ``viscy preprocess`` runs inside :func:`naming_read_errors`, so that a corrupted or
missing chunk ends in an :class:`ArrayReadError` such as::

    ArrayReadError: Cannot read time point 2 of array '0' of FOV 'A/1/0' in store
    '/data/plate.zarr': RuntimeError: error during blosc decompression: -1

instead of the bare decoder message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from viscy_data.ome_compat import array_name, array_store_path

if TYPE_CHECKING:
    from iohub.ngff import ImageArray

__all__ = ["ArrayReadError", "describe_array", "naming_read_errors"]


class ArrayReadError(OSError):
    """An image array could not be read or decoded.

    The message names the store, the FOV, the array and, where known, the time point; the
    original exception is chained as ``__cause__``. The constructor takes the message
    alone, so PyTorch re-raises it from DataLoader worker processes with its type.
    """


def describe_array(image: ImageArray, time_point: int | None = None) -> str:
    """Say where an image array lives.

    Parameters
    ----------
    image : ImageArray
        Array of a position opened with iohub.
    time_point : int, optional
        Time point being read.

    Returns
    -------
    str
        E.g. ``"time point 2 of array '0' of FOV 'A/1/0' in store '/data/plate.zarr'"``; a
        store holding a single FOV has no FOV part.
    """
    parts = array_name(image).strip("/").split("/")
    store = array_store_path(image).parents[len(parts) - 1]
    where = f"array {parts[-1]!r}"
    if len(parts) > 1:
        where += f" of FOV {'/'.join(parts[:-1])!r}"
    where += f" in store {str(store)!r}"
    return where if time_point is None else f"time point {time_point} of {where}"


@contextmanager
def naming_read_errors(image: ImageArray, time_point: int | None = None) -> Iterator[None]:
    """Re-raise an error of the enclosed read of ``image`` as :class:`ArrayReadError`.

    Parameters
    ----------
    image : ImageArray
        The array being read (or opened).
    time_point : int, optional
        The time point being read, named in the message.

    Yields
    ------
    None
        Read inside the ``with`` block.

    Raises
    ------
    ArrayReadError
        If the block raises any other exception, chained as ``__cause__``; its type and
        message are repeated in the new message.

    Examples
    --------
    >>> with naming_read_errors(position["0"], time_point=t):  # doctest: +SKIP
    ...     volume = position["0"][t]
    """
    try:
        yield
    except ArrayReadError:
        raise
    except Exception as error:
        where = describe_array(image, time_point)
        raise ArrayReadError(f"Cannot read {where}: {type(error).__name__}: {error}") from error
