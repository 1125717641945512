"""Uniform access to embeddings held as AnnData, legacy xarray datasets or plain arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from viscy_data import INDEX_COLUMNS
from viscy_data._utils import _require_columns

__all__ = ["INDEX_COLUMNS", "embedding_matrix", "embedding_obs", "require_columns"]


def _is_xarray_dataset(data: Any) -> bool:
    return hasattr(data, "data_vars") and hasattr(data, "coords")


def _is_anndata(data: Any) -> bool:
    return hasattr(data, "obs") and hasattr(data, "X") and hasattr(data, "obsm")


def embedding_matrix(data: Any) -> np.ndarray:
    """Return the feature matrix ``(N, D)`` of embeddings.

    Parameters
    ----------
    data : AnnData, xarray.Dataset or array-like
        AnnData (``X``), a legacy xarray dataset (``features`` variable) or an array.

    Returns
    -------
    np.ndarray
        Dense float array of shape ``(N, D)``.
    """
    if _is_anndata(data):
        matrix = data.X
        matrix = matrix.toarray() if hasattr(matrix, "toarray") else matrix
    elif _is_xarray_dataset(data):
        matrix = data["features"].values
    else:
        matrix = data
    matrix = np.asarray(matrix)
    if matrix.ndim != 2:
        raise ValueError(f"Embeddings must be a 2-D (samples, features) matrix, got shape {matrix.shape}.")
    return matrix


def embedding_obs(data: Any) -> pd.DataFrame:
    """Return the per-sample tracking table of embeddings, with a fresh ``RangeIndex``.

    Parameters
    ----------
    data : AnnData or xarray.Dataset
        AnnData (``obs``) or a legacy xarray dataset (its ``sample`` coordinates).

    Returns
    -------
    pd.DataFrame
        One row per sample, in storage order.
    """
    if _is_anndata(data):
        obs = data.obs.reset_index(drop=True)
    elif _is_xarray_dataset(data):
        columns = {
            name: np.asarray(coord.values)
            for name, coord in data.coords.items()
            if coord.dims == ("sample",) and name != "sample"
        }
        obs = pd.DataFrame(columns)
    else:
        raise TypeError(f"Expected AnnData or an xarray Dataset with tracking coordinates, got {type(data).__name__}.")
    return obs


def require_columns(table: pd.DataFrame, columns: list[str], what: str = "embeddings") -> None:
    """Raise :class:`viscy_data._utils.MissingColumnsError` (a ``KeyError``) naming the missing and the present columns.

    Parameters
    ----------
    table : pd.DataFrame
        Table to check.
    columns : list of str
        Required columns.
    what : str
        Name of the table in the message.
    """
    _require_columns(table.columns, columns, f"The {what}")
