"""Process-pool helpers and the normalization statistics used by ``viscy preprocess``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from viscy_data.normalization import compute_statistics

__all__ = ["get_val_stats", "mp_get_val_stats", "mp_wrapper"]

get_val_stats = compute_statistics
"""NaN-aware statistics of pixel values; the same function as :func:`viscy_data.normalization.compute_statistics`."""


def mp_wrapper(fn: Callable[..., Any], fn_args: Sequence[tuple], workers: int) -> list[Any]:
    """Call ``fn(*args)`` for every tuple of ``fn_args`` in a process pool.

    Parameters
    ----------
    fn : Callable
        A picklable (module-level) function.
    fn_args : sequence of tuple
        One tuple of positional arguments per call.
    workers : int
        Number of worker processes.

    Returns
    -------
    list
        The results, in the order of ``fn_args``.
    """
    if not fn_args:
        return []
    with ProcessPoolExecutor(max_workers=workers) as executor:
        return list(executor.map(fn, *zip(*fn_args, strict=True)))


def mp_get_val_stats(fn_args: Sequence[np.ndarray], workers: int) -> list[dict[str, float]]:
    """Compute :func:`get_val_stats` of several arrays in a process pool.

    Parameters
    ----------
    fn_args : sequence of np.ndarray
        Arrays of pixel values.
    workers : int
        Number of worker processes.

    Returns
    -------
    list of dict
        One statistics dict per array, in order.
    """
    return mp_wrapper(get_val_stats, [(values,) for values in fn_args], workers)
