"""Join annotations to AnnData embeddings and convert legacy xarray embeddings to AnnData."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from viscy_utils._optional import import_optional
from viscy_utils.evaluation._embeddings import require_columns

__all__ = ["convert", "load_annotation_anndata"]

_logger = logging.getLogger(__name__)

_REDUCTION_PREFIXES = {"PCA": "X_pca", "UMAP": "X_umap", "PHATE": "X_phate"}


def _component_number(name: str) -> int:
    """Trailing integer of a coordinate name such as ``UMAP10`` (natural sort key)."""
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) if match else 0


def convert(
    embeddings_ds: Any,
    output_path: str | Path,
    overwrite: bool = False,
    return_anndata: bool = False,
) -> Any:
    """Convert legacy xarray embeddings to an AnnData zarr store.

    ``obs`` gets the tracking-index coordinates (``fov_name`` stripped of ``/``), ``X`` the
    ``features``, ``obsm["X_projections"]`` the ``projections`` and ``obsm["X_pca"|"X_umap"|
    "X_phate"]`` the coordinates whose names contain ``PCA``/``UMAP``/``PHATE``, in natural
    order (``UMAP2`` before ``UMAP10``). Needs ``pip install 'viscy-utils[anndata]'``.

    Parameters
    ----------
    embeddings_ds : xarray.Dataset or Path
        The dataset, or the path of its zarr store.
    output_path : str or Path
        AnnData zarr store to write.
    overwrite : bool
        Replace an existing store.
    return_anndata : bool
        Return the AnnData object.

    Returns
    -------
    AnnData or None
        The converted data when ``return_anndata`` is True.

    Raises
    ------
    FileExistsError
        If ``output_path`` exists and ``overwrite`` is False.
    """
    from viscy_utils.callbacks.embedding_writer import get_available_index_columns, read_embedding_dataset

    anndata = import_optional("anndata", extra="anndata")
    output_path = Path(output_path)
    if output_path.exists() and not overwrite:
        raise FileExistsError(f"{output_path} exists; pass overwrite=True to replace it.")
    dataset = read_embedding_dataset(embeddings_ds) if isinstance(embeddings_ds, str | Path) else embeddings_ds
    if "sample" in dataset.indexes and isinstance(dataset.indexes["sample"], pd.MultiIndex):
        dataset = dataset.reset_index("sample")
    index_columns = get_available_index_columns(dataset)
    obs = pd.DataFrame({column: np.asarray(dataset[column].values) for column in index_columns})
    if "fov_name" in obs:
        obs["fov_name"] = obs["fov_name"].astype(str).str.strip("/").astype(object)
    obs.index = pd.Index([str(i) for i in range(len(obs))])
    adata = anndata.AnnData(X=np.asarray(dataset["features"].values), obs=obs)
    if "projections" in dataset:
        adata.obsm["X_projections"] = np.asarray(dataset["projections"].values)
    for prefix, key in _REDUCTION_PREFIXES.items():
        names = sorted((str(n) for n in dataset.variables if prefix in str(n)), key=_component_number)
        if names:
            adata.obsm[key] = np.column_stack([np.asarray(dataset[name].values) for name in names])
    if output_path.exists():
        shutil.rmtree(output_path)
    adata.write_zarr(output_path)
    _logger.info("Converted %d embeddings to %s", adata.n_obs, output_path)
    return adata if return_anndata else None


def load_annotation_anndata(
    adata: Any, path: str | Path, name: str, categories: Mapping[Any, Any] | None = None
) -> Any:
    """Add one annotation column of a CSV to ``adata.obs``, matched on ``(fov_name, id)``.

    Parameters
    ----------
    adata : AnnData
        Embeddings whose ``obs`` has ``fov_name`` and ``id``.
    path : str or Path
        CSV with ``fov_name``, ``id`` and the ``name`` column.
    name : str
        Annotation column to add.
    categories : Mapping, optional
        Renames annotation values (e.g. ``{0: "uninfected", 1: "infected"}``).

    Returns
    -------
    AnnData
        ``adata`` with ``obs[name]`` set; cells without an annotation get NaN.

    Raises
    ------
    KeyError
        If the CSV or ``obs`` lacks a needed column (the message lists those present).
    ValueError
        If the CSV annotates the same ``(fov_name, id)`` twice.
    """
    annotation = pd.read_csv(path)
    require_columns(annotation, ["fov_name", "id", name], what=f"annotations {path}")
    require_columns(adata.obs, ["fov_name", "id"], what="embeddings obs")
    annotation["fov_name"] = annotation["fov_name"].astype(str).str.strip("/")
    keys = ["fov_name", "id"]
    duplicated = annotation.duplicated(keys)
    if duplicated.any():
        raise ValueError(f"{path} annotates {int(duplicated.sum())} (fov_name, id) pairs more than once.")
    lookup = annotation.set_index(keys)[name]
    obs_keys = pd.MultiIndex.from_arrays(
        [adata.obs["fov_name"].astype(str).str.strip("/"), adata.obs["id"].astype(annotation["id"].dtype)]
    )
    values = lookup.reindex(obs_keys)
    if categories is not None:
        values = values.map(lambda value: categories.get(value, value))
    missing = int(values.isna().sum())
    if missing:
        _logger.warning("%d of %d cells have no %r annotation in %s.", missing, adata.n_obs, name, path)
    adata.obs[name] = values.to_numpy()
    return adata
