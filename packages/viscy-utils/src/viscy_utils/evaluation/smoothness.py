"""How smoothly embeddings change between consecutive frames of a cell, compared with random pairs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from viscy_utils._optional import import_optional
from viscy_utils.evaluation._embeddings import embedding_matrix, embedding_obs
from viscy_utils.evaluation._tracks import adjacent_pairs, track_codes
from viscy_utils.evaluation.dimensionality_reduction import standard_scale

__all__ = [
    "compute_embeddings_smoothness",
    "compute_piece_wise_distance",
    "find_distribution_peak",
    "paired_distances",
]

_MAX_KDE_SAMPLES = 10_000
"""The KDE of :func:`find_distribution_peak` is fitted on at most this many samples."""


def paired_distances(a: np.ndarray, b: np.ndarray, metric: Literal["cosine", "euclidean"] = "cosine") -> np.ndarray:
    """Distance between row ``i`` of ``a`` and row ``i`` of ``b``, for every ``i``.

    Parameters
    ----------
    a, b : np.ndarray
        ``(M, D)`` arrays.
    metric : {"cosine", "euclidean"}
        Distance.

    Returns
    -------
    np.ndarray
        ``M`` distances.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if metric == "cosine":
        norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
        return np.clip(1.0 - np.sum(a * b, axis=1) / norms, 0.0, 2.0)
    if metric == "euclidean":
        return np.linalg.norm(a - b, axis=1)
    raise ValueError(f"distance_metric must be 'cosine' or 'euclidean', got {metric!r}.")


def compute_piece_wise_distance(
    features_df: pd.DataFrame,
    cross_dist: np.ndarray,
    rank_fractions: np.ndarray,
    groupby: Sequence[str] = ("fov_name", "track_id"),
) -> tuple[list[list[float]], list[list[float]]]:
    """Consecutive-frame distances and neighbor-rank fractions of every track, from full matrices.

    Rows are put in time order within each track first (``features_df`` need not be sorted).

    Parameters
    ----------
    features_df : pd.DataFrame
        Tracking table aligned with the matrices (``t`` and the ``groupby`` columns).
    cross_dist : np.ndarray
        ``(N, N)`` distances.
    rank_fractions : np.ndarray
        ``(N, N)`` normalized neighbor ranks.
    groupby : sequence of str
        Columns identifying a track.

    Returns
    -------
    tuple
        Per track, the lag-1 distances and the lag-1 rank fractions, in time order.
    """
    earlier, later = adjacent_pairs(features_df.reset_index(drop=True), groupby)
    codes = track_codes(features_df.reset_index(drop=True), groupby)[earlier]
    distances, ranks = [], []
    for code in pd.unique(codes):
        pairs = codes == code
        distances.append(cross_dist[later[pairs], earlier[pairs]].tolist())
        ranks.append(rank_fractions[later[pairs], earlier[pairs]].tolist())
    return distances, ranks


def find_distribution_peak(data: np.ndarray, method: Literal["kde_robust", "histogram"] = "kde_robust") -> float:
    """Location of the highest mode of a distribution.

    Only peaks at least 10% as high as the maximum count; the highest one is returned.

    Parameters
    ----------
    data : np.ndarray
        Samples.
    method : {"kde_robust", "histogram"}
        Gaussian KDE evaluated on 1000 points (fitted on at most 10,000 samples drawn with a
        fixed seed), or a 50-bin histogram.

    Returns
    -------
    float
        The peak location (the median for constant data).
    """
    data = np.asarray(data, dtype=np.float64)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return float("nan")
    if np.ptp(data) == 0 or data.size < 2:
        return float(np.median(data))
    signal = import_optional("scipy.signal", extra="eval")
    if method == "kde_robust":
        stats = import_optional("scipy.stats", extra="eval")
        grid = np.linspace(data.min(), data.max(), 1000)
        if data.size > _MAX_KDE_SAMPLES:
            data = np.random.default_rng(0).choice(data, _MAX_KDE_SAMPLES, replace=False)
        density = stats.gaussian_kde(data)(grid)
    elif method == "histogram":
        density, edges = np.histogram(data, bins=50)
        grid = (edges[:-1] + edges[1:]) / 2
    else:
        raise ValueError(f"method must be 'kde_robust' or 'histogram', got {method!r}.")
    padded = np.concatenate([[0.0], density, [0.0]])
    peaks, _ = signal.find_peaks(padded, height=0.1 * density.max())
    if peaks.size == 0:
        return float(grid[np.argmax(density)])
    best = peaks[np.argmax(padded[peaks])] - 1
    return float(grid[best])


def compute_embeddings_smoothness(
    adata: Any,
    distance_metric: Literal["cosine", "euclidean"] = "cosine",
    verbose: bool = False,
    random_seed: int = 42,
    scale_features: bool = True,
) -> tuple[dict[str, float], dict[str, np.ndarray], pd.DataFrame]:
    """Compare distances between consecutive frames of a cell with distances between random pairs.

    Frames are put in time order within each track (``fov_name`` + ``track_id``) first.
    Distances are computed only for the pairs used (no ``N x N`` matrix), so this scales to
    large N. Random pairs (``i != j``, as many as adjacent pairs) come from a generator seeded
    with ``random_seed``.

    Parameters
    ----------
    adata : AnnData or xarray.Dataset
        Embeddings with ``fov_name``, ``track_id`` and ``t``.
    distance_metric : {"cosine", "euclidean"}
        Distance between embedding vectors.
    verbose : bool
        Print the statistics.
    random_seed : int
        Seed of the random pairs.
    scale_features : bool
        Standard-scale features first.

    Returns
    -------
    tuple
        - stats: ``adjacent_frame_{mean,std,median,peak}``, ``random_frame_{mean,std,median,peak}``,
          ``smoothness_score = adjacent mean / random mean`` (lower is smoother) and
          ``dynamic_range = random peak - adjacent peak``;
        - distributions: ``adjacent_frame_distribution`` and ``random_frame_distribution``;
        - per-track table: ``fov_name``, ``track_id``, ``n_pairs`` and ``mean_adjacent_distance``.

    Raises
    ------
    ValueError
        If no track has two frames.
    """
    obs = embedding_obs(adata)
    features = embedding_matrix(adata).astype(np.float64)
    if scale_features:
        features = standard_scale(features)
    earlier, later = adjacent_pairs(obs)
    if earlier.size == 0:
        raise ValueError("No track has two frames: smoothness needs consecutive observations of a cell.")
    adjacent = paired_distances(features[earlier], features[later], distance_metric)
    rng = np.random.default_rng(random_seed)
    n_samples = features.shape[0]
    first = rng.integers(0, n_samples, size=adjacent.size)
    second = (first + rng.integers(1, n_samples, size=adjacent.size)) % n_samples
    random = paired_distances(features[first], features[second], distance_metric)
    stats: dict[str, float] = {}
    for name, values in (("adjacent_frame", adjacent), ("random_frame", random)):
        stats[f"{name}_mean"] = float(np.mean(values))
        stats[f"{name}_std"] = float(np.std(values))
        stats[f"{name}_median"] = float(np.median(values))
        stats[f"{name}_peak"] = find_distribution_peak(values)
    stats["smoothness_score"] = stats["adjacent_frame_mean"] / max(stats["random_frame_mean"], 1e-12)
    stats["dynamic_range"] = stats["random_frame_peak"] - stats["adjacent_frame_peak"]
    pairs = obs.iloc[earlier][["fov_name", "track_id"]].reset_index(drop=True)
    pairs["distance"] = adjacent
    per_track = (
        pairs.groupby(["fov_name", "track_id"], sort=True, observed=True)["distance"]
        .agg(n_pairs="size", mean_adjacent_distance="mean")
        .reset_index()
    )
    if verbose:
        for key, value in stats.items():
            print(f"{key}: {value:.4f}")
    distributions = {"adjacent_frame_distribution": adjacent, "random_frame_distribution": random}
    return stats, distributions, per_track
