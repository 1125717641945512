"""Neighborhood and clustering scores of embeddings (``pip install 'viscy-utils[eval]'``)."""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch

from viscy_utils._optional import import_optional

__all__ = [
    "clustering_evaluation",
    "compare_time_offset",
    "dbscan_clustering",
    "knn_accuracy",
    "pairwise_distance_matrix",
    "rank_nearest_neighbors",
    "select_block",
]

_logger = logging.getLogger(__name__)


def knn_accuracy(
    embeddings: np.ndarray,
    annotations: np.ndarray,
    k: int = 5,
    n_splits: int = 5,
    groups: np.ndarray | None = None,
    random_state: int = 42,
) -> float:
    """Cross-validated k-nearest-neighbor accuracy: every sample is scored by a model not fitted on it.

    Parameters
    ----------
    embeddings : np.ndarray
        ``(N, D)`` features.
    annotations : np.ndarray
        ``N`` labels.
    k : int
        Neighbors.
    n_splits : int
        Folds (stratified; grouped when ``groups`` is given, e.g. one group per track).
    groups : np.ndarray, optional
        Group of each sample; samples of one group never sit in both fit and score folds.
    random_state : int
        Seed of the fold assignment.

    Returns
    -------
    float
        Accuracy over all held-out predictions.
    """
    neighbors = import_optional("sklearn.neighbors", extra="eval")
    model_selection = import_optional("sklearn.model_selection", extra="eval")
    embeddings = np.asarray(embeddings)
    annotations = np.asarray(annotations)
    if groups is None:
        folds = model_selection.StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    else:
        folds = model_selection.StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    predicted = np.empty_like(annotations)
    for fit_index, score_index in folds.split(embeddings, annotations, groups):
        classifier = neighbors.KNeighborsClassifier(n_neighbors=min(k, len(fit_index)))
        classifier.fit(embeddings[fit_index], annotations[fit_index])
        predicted[score_index] = classifier.predict(embeddings[score_index])
    return float(np.mean(predicted == annotations))


def _scipy_distance(features: np.ndarray, metric: str) -> np.ndarray:
    spatial = import_optional("scipy.spatial.distance", extra="eval")
    return spatial.cdist(features, features, metric=metric)


def _torch_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device in ("cuda", "gpu"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={device!r} requested but CUDA is not available.")
        return torch.device("cuda")
    if device == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device must be 'auto', 'cuda', 'gpu', 'cpu', 'scipy' or None, got {device!r}.")


def pairwise_distance_matrix(features: np.ndarray, metric: str = "cosine", device: str | None = "auto") -> np.ndarray:
    """All pairwise distances ``(N, N)`` between rows of ``features``.

    Cosine and Euclidean distances run in float64 torch on ``device``; other metrics,
    ``device in (None, "scipy")`` and torch failures (e.g. out of memory, CUDA missing)
    use :func:`scipy.spatial.distance.cdist`.

    Parameters
    ----------
    features : np.ndarray
        ``(N, D)`` features.
    metric : str
        ``"cosine"``, ``"euclidean"`` or any scipy metric.
    device : str, optional
        ``"auto"``, ``"cuda"``/``"gpu"``, ``"cpu"``, or ``None``/``"scipy"``.

    Returns
    -------
    np.ndarray
        Float64 distance matrix.
    """
    features = np.asarray(features, dtype=np.float64)
    if metric not in ("cosine", "euclidean") or device in (None, "scipy"):
        return _scipy_distance(features, metric)
    try:
        x = torch.from_numpy(features).to(_torch_device(device))
        if metric == "cosine":
            x = torch.nn.functional.normalize(x, dim=1)
            distances = (1 - x @ x.T).clamp_(min=0)
        else:
            distances = torch.cdist(x, x)
        return distances.cpu().numpy()
    except (RuntimeError, torch.OutOfMemoryError) as error:
        _logger.warning("Torch distance computation failed (%s); using scipy.", error)
        return _scipy_distance(features, metric)


def rank_nearest_neighbors(cross_dissimilarity: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Rank of every column within its row of a dissimilarity matrix (0 = nearest).

    Parameters
    ----------
    cross_dissimilarity : np.ndarray
        ``(N, N)`` dissimilarities.
    normalize : bool
        Divide ranks by ``N - 1`` to get fractions in ``[0, 1]``.

    Returns
    -------
    np.ndarray
        Ranks of the same shape.
    """
    ranks = np.argsort(np.argsort(cross_dissimilarity, axis=1), axis=1)
    if normalize:
        return ranks / max(cross_dissimilarity.shape[1] - 1, 1)
    return ranks


def select_block(distances: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Sub-matrix of the rows and columns in ``index``."""
    return distances[index][:, index]


def compare_time_offset(single_track_distances: np.ndarray, time_offset: int = 1) -> np.ndarray:
    """Entries ``[i + time_offset, i]`` of one track's time-ordered distance matrix."""
    return single_track_distances.diagonal(offset=-time_offset)


def dbscan_clustering(embeddings: np.ndarray, eps: float = 0.5, min_samples: int = 5) -> np.ndarray:
    """DBSCAN cluster labels (-1 = noise)."""
    cluster = import_optional("sklearn.cluster", extra="eval")
    return cluster.DBSCAN(eps=eps, min_samples=min_samples).fit_predict(embeddings)


def clustering_evaluation(
    embeddings: np.ndarray, annotations: np.ndarray, method: Literal["nmi", "ari"] = "nmi"
) -> float:
    """Agreement of DBSCAN clusters with annotations: NMI or ARI.

    Raises
    ------
    ValueError
        For any other method.
    """
    if method not in ("nmi", "ari"):
        raise ValueError(f"method must be 'nmi' or 'ari', got {method!r}.")
    metrics = import_optional("sklearn.metrics", extra="eval")
    clusters = dbscan_clustering(embeddings)
    if method == "nmi":
        return float(metrics.normalized_mutual_info_score(annotations, clusters))
    return float(metrics.adjusted_rand_score(annotations, clusters))
