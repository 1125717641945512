"""PCA, UMAP and PHATE projections of embeddings (``pip install 'viscy-utils[eval]'``)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from viscy_utils._optional import import_optional
from viscy_utils.evaluation._embeddings import embedding_matrix, embedding_obs

__all__ = ["compute_pca", "compute_phate", "compute_umap", "fit_transform_umap", "standard_scale"]

_logger = logging.getLogger(__name__)

_METADATA_COLUMNS = ["id", "fov_name", "t", "track_id"]


def standard_scale(features: np.ndarray) -> np.ndarray:
    """Scale every feature to zero mean and unit variance (scikit-learn ``StandardScaler``)."""
    preprocessing = import_optional("sklearn.preprocessing", extra="eval")
    return preprocessing.StandardScaler().fit_transform(features)


def _is_xarray(dataset: Any) -> bool:
    return hasattr(dataset, "data_vars")


def compute_phate(
    embedding_dataset: Any,
    scale_embeddings: bool = False,
    n_components: int = 2,
    knn: int = 5,
    decay: int = 40,
    update_dataset: bool = False,
    random_state: int = 42,
    **phate_kwargs: Any,
) -> tuple[Any, np.ndarray]:
    """Embed features with PHATE.

    ``knn`` is reduced to ``max(2, N // 2)`` when there are no more than ``knn`` samples, so
    small prediction runs still work.

    Parameters
    ----------
    embedding_dataset : xarray.Dataset, AnnData or np.ndarray
        Embeddings; an xarray dataset uses its ``features`` variable.
    scale_embeddings : bool
        Standard-scale the features first.
    n_components : int
        Output dimensions.
    knn : int
        Nearest neighbors of the PHATE kernel.
    decay : int
        Kernel decay.
    update_dataset : bool
        With an xarray dataset, add ``PHATE1..n`` coordinates to it.
    random_state : int
        Seed.
    **phate_kwargs
        Passed to ``phate.PHATE``.

    Returns
    -------
    tuple
        The fitted ``phate.PHATE`` model and the ``(N, n_components)`` embedding.

    Raises
    ------
    ValueError
        With fewer than 3 samples.
    ImportError
        If phate (the ``eval`` extra) is missing.
    """
    phate = import_optional("phate", extra="eval")
    features = embedding_matrix(embedding_dataset).astype(np.float64)
    n_samples = features.shape[0]
    if n_samples < 3:
        raise ValueError(f"PHATE needs at least 3 samples, got {n_samples}.")
    if knn >= n_samples:
        knn = max(2, n_samples // 2)
        _logger.info("PHATE: only %d samples, using knn=%d", n_samples, knn)
    if scale_embeddings:
        features = standard_scale(features)
    model = phate.PHATE(
        n_components=n_components,
        knn=knn,
        decay=decay,
        random_state=random_state,
        verbose=0,
        **phate_kwargs,
    )
    embedding = model.fit_transform(features)
    if update_dataset and _is_xarray(embedding_dataset):
        for i in range(n_components):
            embedding_dataset[f"PHATE{i + 1}"] = ("sample", embedding[:, i])
    return model, embedding


def compute_pca(
    embedding_dataset: Any, n_components: int | None = None, normalize_features: bool = True
) -> tuple[np.ndarray, pd.DataFrame]:
    """Project features on their principal components.

    Parameters
    ----------
    embedding_dataset : xarray.Dataset, AnnData or np.ndarray
        Embeddings.
    n_components : int, optional
        Number of components; all (``min(N, D)``) when None, and at most ``min(N, D)``.
    normalize_features : bool
        Standard-scale the features first.

    Returns
    -------
    tuple
        The ``(N, n_components)`` projection and a DataFrame with ``PC1..PCn`` (plus
        ``id, fov_name, t, track_id`` when the input carries them).
    """
    decomposition = import_optional("sklearn.decomposition", extra="eval")
    features = embedding_matrix(embedding_dataset)
    if normalize_features:
        features = standard_scale(features)
    limit = min(features.shape)
    n_components = limit if n_components is None else min(n_components, limit)
    pcs = decomposition.PCA(n_components=n_components, random_state=42).fit_transform(features)
    pca_df = pd.DataFrame(pcs, columns=[f"PC{i + 1}" for i in range(n_components)])
    if not isinstance(embedding_dataset, np.ndarray):
        obs = embedding_obs(embedding_dataset)
        for column in _METADATA_COLUMNS:
            if column in obs:
                pca_df[column] = obs[column].to_numpy()
    return pcs, pca_df


def fit_transform_umap(
    embeddings: np.ndarray,
    n_components: int = 2,
    n_neighbors: int = 15,
    normalize: bool = True,
    random_state: int = 42,
    **umap_kwargs: Any,
) -> tuple[Any, np.ndarray]:
    """Fit UMAP on embeddings and return the model and the projection.

    ``n_neighbors`` is reduced to ``max(2, min(15, N // 2))`` when there are no more than
    ``n_neighbors`` samples, so small prediction runs still work.

    Parameters
    ----------
    embeddings : np.ndarray
        ``(N, D)`` features.
    n_components : int
        Output dimensions.
    n_neighbors : int
        Size of the local neighborhood.
    normalize : bool
        Standard-scale the features first.
    random_state : int
        Seed.
    **umap_kwargs
        Passed to ``umap.UMAP``.

    Returns
    -------
    tuple
        The fitted ``umap.UMAP`` model and the ``(N, n_components)`` projection.

    Raises
    ------
    ValueError
        With fewer than 4 samples.
    """
    umap = import_optional("umap", extra="eval")
    features = embedding_matrix(embeddings)
    n_samples = features.shape[0]
    if n_samples < 4:
        raise ValueError(f"UMAP needs at least 4 samples, got {n_samples}.")
    if n_neighbors >= n_samples:
        n_neighbors = max(2, min(15, n_samples // 2))
        _logger.info("UMAP: only %d samples, using n_neighbors=%d", n_samples, n_neighbors)
    if normalize:
        features = standard_scale(features)
    if n_samples <= n_components + 1:
        umap_kwargs.setdefault("init", "random")
    model = umap.UMAP(n_components=n_components, n_neighbors=n_neighbors, random_state=random_state, **umap_kwargs)
    return model, model.fit_transform(features)


def compute_umap(embedding_dataset: Any, normalize_features: bool = True) -> tuple[Any, Any, pd.DataFrame]:
    """UMAP of the features and of the projections of a legacy xarray embedding dataset.

    Parameters
    ----------
    embedding_dataset : xarray.Dataset
        Legacy embeddings with ``features`` and ``projections`` variables.
    normalize_features : bool
        Standard-scale before fitting.

    Returns
    -------
    tuple
        The features' UMAP model, the projections' UMAP model and a DataFrame with
        ``id, track_id, t, fov_name, UMAP1, UMAP2, UMAP1_proj, UMAP2_proj``.
    """
    features = embedding_dataset["features"].values
    projections = embedding_dataset["projections"].values
    umap_features, features_2d = fit_transform_umap(features, normalize=normalize_features)
    umap_projections, projections_2d = fit_transform_umap(projections, normalize=normalize_features)
    obs = embedding_obs(embedding_dataset)
    umap_df = pd.DataFrame({column: obs[column].to_numpy() for column in ["id", "track_id", "t", "fov_name"]})
    umap_df["UMAP1"], umap_df["UMAP2"] = features_2d[:, 0], features_2d[:, 1]
    umap_df["UMAP1_proj"], umap_df["UMAP2_proj"] = projections_2d[:, 0], projections_2d[:, 1]
    return umap_features, umap_projections, umap_df


_fit_transform_umap = fit_transform_umap
"""Alias under the reference name."""
