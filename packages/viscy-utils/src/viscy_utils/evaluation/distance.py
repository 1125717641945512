"""Distances between the embeddings of a cell over time."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

import numpy as np

from viscy_utils.evaluation._embeddings import embedding_matrix, embedding_obs
from viscy_utils.evaluation._tracks import track_codes, track_order

__all__ = ["calculate_cosine_similarity_cell", "compute_track_displacement", "pairwise_track_distances"]


def _normalize_fov(names: Any) -> np.ndarray:
    return np.asarray([str(name).strip("/") for name in names], dtype=object)


def calculate_cosine_similarity_cell(embeddings: Any, fov_name: str, track_id: int) -> tuple[np.ndarray, list[float]]:
    """Cosine similarity of every frame of one cell to its first frame.

    Parameters
    ----------
    embeddings : AnnData or xarray.Dataset
        Embeddings with ``fov_name``, ``track_id`` and ``t``.
    fov_name : str
        FOV of the cell (leading/trailing ``/`` ignored).
    track_id : int
        Track of the cell.

    Returns
    -------
    tuple
        The sorted time points and the similarities, clipped to ``[-1, 1]``.

    Raises
    ------
    KeyError
        If the track is not in the embeddings.
    """
    obs = embedding_obs(embeddings)
    features = embedding_matrix(embeddings)
    selected = np.flatnonzero(
        (_normalize_fov(obs["fov_name"]) == str(fov_name).strip("/")) & (obs["track_id"].to_numpy() == track_id)
    )
    if selected.size == 0:
        raise KeyError(f"Track {track_id} of FOV {fov_name!r} is not in the embeddings.")
    selected = selected[np.argsort(obs["t"].to_numpy()[selected], kind="stable")]
    vectors = features[selected].astype(np.float64)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarities = np.clip(unit @ unit[0], -1.0, 1.0)
    return obs["t"].to_numpy()[selected], similarities.tolist()


def pairwise_track_distances(vectors: np.ndarray, distance_metric: Literal["cosine", "euclidean"]) -> np.ndarray:
    """All pairwise distances ``(n, n)`` between the frames of one track."""
    vectors = vectors.astype(np.float64)
    if distance_metric == "cosine":
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    if distance_metric == "euclidean":
        squared = np.sum(vectors**2, axis=1)
        return np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * vectors @ vectors.T, 0.0))
    raise ValueError(f"distance_metric must be 'cosine' or 'euclidean', got {distance_metric!r}.")


def compute_track_displacement(
    embeddings: Any, distance_metric: Literal["cosine", "euclidean"] = "cosine"
) -> dict[int, list[float]]:
    """Embedding distances between frames of the same cell, binned by their time lag.

    For every track (``fov_name`` + ``track_id``), sorted by ``t``, the distance between each
    pair of frames is collected under ``tau = t_later - t_earlier``. The values are plain
    distances, not squared.

    Parameters
    ----------
    embeddings : AnnData or xarray.Dataset
        Embeddings with ``fov_name``, ``track_id`` and ``t``.
    distance_metric : {"cosine", "euclidean"}
        Distance between embedding vectors.

    Returns
    -------
    dict[int, list[float]]
        ``{tau: distances}`` for every observed lag ``tau >= 1``, sorted by tau.
    """
    obs = embedding_obs(embeddings)
    features = embedding_matrix(embeddings)
    order = track_order(obs)
    codes = track_codes(obs)[order]
    times = obs["t"].to_numpy()[order]
    boundaries = np.flatnonzero(np.diff(codes)) + 1
    displacements: dict[int, list[float]] = defaultdict(list)
    for rows, t in zip(np.split(order, boundaries), np.split(times, boundaries), strict=True):
        if len(rows) < 2:
            continue
        distances = pairwise_track_distances(features[rows], distance_metric)
        later, earlier = np.tril_indices(len(rows), k=-1)
        lags = (t[later] - t[earlier]).astype(int)
        values = distances[later, earlier]
        for lag in np.unique(lags[lags > 0]):
            displacements[int(lag)].extend(values[lags == lag].tolist())
    return dict(sorted(displacements.items()))
