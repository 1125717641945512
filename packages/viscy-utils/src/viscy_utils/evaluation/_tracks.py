"""Time-ordered positions of tracked cells within an embedding table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from viscy_utils.evaluation._embeddings import require_columns

__all__ = ["adjacent_pairs", "track_codes", "track_order"]


def track_codes(obs: pd.DataFrame, groupby: Sequence[str] = ("fov_name", "track_id")) -> np.ndarray:
    """Integer code of each row's track (vectorized).

    Parameters
    ----------
    obs : pd.DataFrame
        Tracking table.
    groupby : sequence of str
        Columns identifying a track.

    Returns
    -------
    np.ndarray
        One code per row; rows of the same track share it.
    """
    require_columns(obs, list(groupby))
    return obs.groupby(list(groupby), sort=False, observed=True).ngroup().to_numpy()


def track_order(
    obs: pd.DataFrame, groupby: Sequence[str] = ("fov_name", "track_id"), time_column: str = "t"
) -> np.ndarray:
    """Row positions sorted by track, then by time.

    Parameters
    ----------
    obs : pd.DataFrame
        Tracking table.
    groupby : sequence of str
        Columns identifying a track.
    time_column : str
        Time column.

    Returns
    -------
    np.ndarray
        Positions into ``obs``.
    """
    require_columns(obs, [*groupby, time_column])
    return np.lexsort((obs[time_column].to_numpy(), track_codes(obs, groupby)))


def adjacent_pairs(
    obs: pd.DataFrame, groupby: Sequence[str] = ("fov_name", "track_id"), time_column: str = "t"
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of consecutive observations (in time) of the same track.

    Rows need not be in time order: they are sorted by time within each track first.

    Parameters
    ----------
    obs : pd.DataFrame
        Tracking table.
    groupby : sequence of str
        Columns identifying a track.
    time_column : str
        Time column.

    Returns
    -------
    tuple of np.ndarray
        ``(earlier, later)`` row positions into ``obs``.
    """
    order = track_order(obs, groupby, time_column)
    codes = track_codes(obs, groupby)[order]
    same_track = codes[1:] == codes[:-1]
    return order[:-1][same_track], order[1:][same_track]
