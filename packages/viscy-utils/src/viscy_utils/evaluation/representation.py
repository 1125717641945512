"""Cheap measures of representation quality, logged during training by ``viscy_utils.callbacks.OnlineEvaluation``.

Only torch, numpy and pandas (no ``eval`` extra): every function runs in float64 on the CPU, so
the same cells give the same values in any process. All take plain ``(N, D)`` arrays or tensors.

- :func:`knn_accuracy` and :func:`linear_probe_score`: how well a label can be read from the
  embeddings, scored on whole tracks the classifier never saw (:func:`track_split`), as balanced
  accuracy (chance is ``1 / n_classes`` whatever the class balance).
- :func:`effective_rank`: how many dimensions the embeddings use (collapse drives it to 1).
- :func:`alignment` and :func:`uniformity`: Wang & Isola (2020), on L2-normalized embeddings.
- :func:`temporal_smoothness`: consecutive frames of a cell compared with random pairs of cells.
- :func:`select_track_windows`: a bounded, deterministic set of cells spread over tracks, with
  consecutive frames, for the measures above.
- :func:`representation_metrics`: all of them at once, named as the callback logs them.

The offline, cross-validated :func:`viscy_utils.evaluation.clustering.knn_accuracy` (scikit-learn,
plain accuracy) and :mod:`viscy_utils.evaluation.linear_classifier` remain the measures of a
finished model; these are their cheap online counterparts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from viscy_utils.evaluation._embeddings import require_columns
from viscy_utils.evaluation._tracks import adjacent_pairs

__all__ = [
    "alignment",
    "balanced_accuracy",
    "consecutive_frame_pairs",
    "effective_rank",
    "knn_accuracy",
    "linear_probe_score",
    "representation_metrics",
    "select_track_windows",
    "temporal_smoothness",
    "track_split",
    "uniformity",
]

MISSING_LABELS = ("", "unknown", "nan", "none")
"""Label values (compared lower-case, as strings) that mean "not annotated": such cells are left out."""


def _double(x: Any) -> torch.Tensor:
    """Return a float64 CPU copy of ``x`` that autograd may use, even under ``torch.inference_mode``."""
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    with torch.inference_mode(False):
        return torch.tensor(np.asarray(array, dtype=np.float64))


def _key_frame(groups: Any) -> pd.DataFrame:
    if isinstance(groups, pd.DataFrame):
        return groups.reset_index(drop=True)
    return pd.DataFrame({"group": np.asarray(groups)})


def track_split(groups: Any, seed: int = 0) -> np.ndarray:
    """Assign every track, with all its cells, to one of two folds, by a seeded hash of its key.

    The fold of a track depends only on its key and ``seed``: not on row order, on which cells were
    sampled, or on the process, so every DDP rank and every epoch splits alike, and the cells of one
    track never sit on both sides.

    Parameters
    ----------
    groups : array-like or pd.DataFrame
        Track key of each cell: one value per cell (e.g. a track id), or a table whose columns
        together identify a track (e.g. ``experiment, fov_name, track_id``).
    seed : int
        Seed of the split: mixed into the hash of each key.

    Returns
    -------
    np.ndarray
        Boolean fold of each cell.
    """
    hashes = pd.util.hash_pandas_object(_key_frame(groups), index=False).to_numpy(dtype=np.uint64)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps around, as the mixing intends
        mixed = _splitmix64(hashes + np.uint64(int(seed) % 2**64) * np.uint64(0x9E3779B97F4A7C15))
    return (mixed >> np.uint64(63)).astype(bool)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Mix 64-bit hashes with the SplitMix64 finalizer: each input bit flips each output bit with probability ~1/2."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def balanced_accuracy(true: Any, predicted: Any) -> float:
    """Mean over the classes present in ``true`` of the fraction of their cells predicted right (recall).

    Parameters
    ----------
    true, predicted : array-like
        Class of each cell, and its prediction.

    Returns
    -------
    float
        In ``[0, 1]``; ``1 / n_classes`` for a classifier that guesses, NaN without cells.
    """
    true, predicted = np.asarray(true), np.asarray(predicted)
    if true.size == 0:
        return float("nan")
    classes = np.unique(true)
    return float(np.mean([np.mean(predicted[true == c] == c) for c in classes]))


def _codes(labels: Any) -> np.ndarray:
    """Class codes ``0..C-1`` of labels, in sorted order of their values."""
    return pd.factorize(pd.Series(np.asarray(labels)), sort=True)[0].astype(np.int64)


def _folds(labels: Any, groups: Any, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Class codes and track folds, or None when the score is undefined (one class, or an empty fold)."""
    codes = _codes(labels)
    folds = track_split(groups, seed)
    if len(codes) != len(folds):
        raise ValueError(f"{len(codes)} labels but {len(folds)} track keys.")
    if np.unique(codes).size < 2 or folds.all() or not folds.any():
        return None
    return codes, folds


def knn_accuracy(embeddings: Any, labels: Any, groups: Any, k: int = 20, seed: int = 0) -> float:
    """Balanced accuracy of a cosine k-nearest-neighbor vote, across a two-fold split by track.

    The tracks are split in two folds (:func:`track_split`); each cell is classified by a vote of
    its ``k`` most cosine-similar cells of the *other* fold, so no cell is scored by its own track.
    Each neighbor's vote is weighted by the inverse of its class's size in that fold, as the
    balanced accuracy weighs each class's recall equally: with an unweighted vote a class of a
    fifth of the cells rarely wins one, however well the embedding groups it. Ties go to the
    class whose tied neighbors are more similar.

    Parameters
    ----------
    embeddings : array-like
        ``(N, D)`` embeddings.
    labels : array-like
        ``N`` labels (any values; leave unannotated cells out beforehand).
    groups : array-like or pd.DataFrame
        Track key of each cell (see :func:`track_split`).
    k : int
        Neighbors (at most the size of the other fold).
    seed : int
        Seed of the track split.

    Returns
    -------
    float
        Balanced accuracy; NaN with fewer than two classes or when all tracks fall in one fold.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    split = _folds(labels, groups, seed)
    if split is None:
        return float("nan")
    codes, folds = split
    x = F.normalize(_double(embeddings), dim=1)
    y = torch.from_numpy(codes)
    n_classes = int(codes.max()) + 1
    predicted = np.empty_like(codes)
    for scored in (folds, ~folds):
        query, reference = x[torch.from_numpy(scored)], x[torch.from_numpy(~scored)]
        neighbors = min(k, reference.shape[0])
        similarity, nearest = (query @ reference.T).topk(neighbors, dim=1)
        reference_labels = y[torch.from_numpy(~scored)]
        class_sizes = torch.bincount(reference_labels, minlength=n_classes).clamp(min=1).to(torch.float64)
        votes = F.one_hot(reference_labels[nearest], n_classes).to(torch.float64)
        # distinct weighted vote totals differ by at least 1 / (n_a * n_b) > 1e-13 for folds of up to
        # 3 million cells; the similarity term is below 1e-13, so it only breaks ties
        tie_break = votes.mul(similarity.unsqueeze(-1) + 1).sum(1) / (2 * neighbors + 1) * 1e-13
        score = votes.sum(1) / class_sizes + tie_break
        predicted[scored] = score.argmax(1).numpy()
    return balanced_accuracy(codes, predicted)


def linear_probe_score(
    embeddings: Any,
    labels: Any,
    groups: Any,
    seed: int = 0,
    weight_decay: float | None = None,
    max_iter: int = 100,
) -> float:
    """Balanced accuracy of a logistic-regression probe, across a two-fold split by track.

    For each fold of :func:`track_split`, a multinomial logistic regression is fitted on the
    other fold (features standardized with that fold's mean and standard deviation, classes
    weighted by inverse frequency, L2 penalty ``weight_decay``, L-BFGS from zero for at most
    ``max_iter`` iterations or until the gradient falls below 1e-5: deterministic) and scores
    this fold. The default penalty, ``1 / (2 n_fit)`` on the mean loss, is scikit-learn's
    ``LogisticRegression(C=1)``.

    Parameters
    ----------
    embeddings : array-like
        ``(N, D)`` embeddings.
    labels : array-like
        ``N`` labels (leave unannotated cells out beforehand).
    groups : array-like or pd.DataFrame
        Track key of each cell (see :func:`track_split`).
    seed : int
        Seed of the track split.
    weight_decay : float, optional
        L2 penalty on the weights, added to the mean cross-entropy; default ``1 / (2 n_fit)``.
    max_iter : int
        L-BFGS iterations per fold.

    Returns
    -------
    float
        Balanced accuracy; NaN with fewer than two classes or when all tracks fall in one fold.
    """
    split = _folds(labels, groups, seed)
    if split is None:
        return float("nan")
    codes, folds = split
    n_classes = int(codes.max()) + 1
    predicted = np.empty_like(codes)
    with torch.inference_mode(False), torch.enable_grad():
        x = _double(embeddings)
        y = torch.from_numpy(codes)
        for scored in (folds, ~folds):
            fit = torch.from_numpy(~scored)
            x_fit, y_fit = x[fit], y[fit]
            mean, std = x_fit.mean(0), x_fit.std(0, unbiased=False).clamp(min=1e-6)
            x_fit = (x_fit - mean) / std
            counts = torch.bincount(y_fit, minlength=n_classes).to(torch.float64)
            weight = torch.where(counts > 0, len(y_fit) / (counts.clamp(min=1) * (counts > 0).sum()), 0.0)
            w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
            b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
            optimizer = torch.optim.LBFGS(
                [w, b],
                lr=1.0,
                max_iter=max_iter,
                tolerance_grad=1e-5,
                tolerance_change=1e-7,
                line_search_fn="strong_wolfe",
            )
            penalty = 1 / (2 * len(y_fit)) if weight_decay is None else weight_decay

            def closure(x_fit=x_fit, y_fit=y_fit, weight=weight, w=w, b=b, optimizer=optimizer, penalty=penalty):
                optimizer.zero_grad()
                loss = F.cross_entropy(x_fit @ w + b, y_fit, weight=weight) + penalty * w.pow(2).sum()
                loss.backward()
                return loss

            optimizer.step(closure)
            with torch.no_grad():
                logits = ((x[torch.from_numpy(scored)] - mean) / std) @ w + b
                logits[:, counts == 0] = -math.inf  # a class absent from the fitted fold is never predicted
                predicted[scored] = logits.argmax(1).numpy()
    return balanced_accuracy(codes, predicted)


def effective_rank(embeddings: Any) -> float:
    """Effective rank (Roy & Vetterli, 2007): exp of the entropy of the normalized singular values.

    Computed on the embeddings as they are (not centered), as RankMe (Garrido et al., 2023) does:
    ``p_i = s_i / sum(s)``, ``erank = exp(-sum p_i log p_i)``. It lies in ``[1, min(N, D)]``: 1
    when every embedding is the same vector (collapse) or a multiple of it, ``min(N, D)`` when
    the singular values are all equal.

    Parameters
    ----------
    embeddings : array-like
        ``(N, D)`` embeddings.

    Returns
    -------
    float
        The effective rank; 0 for an all-zero matrix, NaN without rows.
    """
    x = _double(embeddings)
    if x.numel() == 0:
        return float("nan")
    singular = torch.linalg.svdvals(x)
    total = singular.sum()
    if total <= 0:
        return 0.0
    p = singular / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def alignment(x: Any, y: Any, alpha: float = 2.0) -> float:
    """Alignment of positive pairs (Wang & Isola, 2020): ``mean ||x_i - y_i||^alpha`` after L2 normalization.

    Parameters
    ----------
    x, y : array-like
        ``(M, D)`` embeddings; row ``i`` of each is a positive pair.
    alpha : float
        Exponent of the distance.

    Returns
    -------
    float
        In ``[0, 2**alpha]``; 0 when every pair coincides. NaN without pairs.
    """
    a, b = F.normalize(_double(x), dim=1), F.normalize(_double(y), dim=1)
    if a.shape[0] == 0:
        return float("nan")
    return float((a - b).norm(dim=1).pow(alpha).mean())


def uniformity(x: Any, t: float = 2.0) -> float:
    """Uniformity (Wang & Isola, 2020): ``log mean_{i<j} exp(-t ||z_i - z_j||^2)`` of L2-normalized embeddings.

    Parameters
    ----------
    x : array-like
        ``(N, D)`` embeddings.
    t : float
        Temperature of the Gaussian potential.

    Returns
    -------
    float
        In ``[-4t, 0]`` (``[-8, 0]`` for ``t = 2``): 0 when every embedding is the same direction
        (collapse); lower when they spread over the sphere. NaN with fewer than two rows.
    """
    z = F.normalize(_double(x), dim=1)
    if z.shape[0] < 2:
        return float("nan")
    potentials = torch.pdist(z).pow(2).mul(-t)
    return float(torch.logsumexp(potentials, 0) - math.log(potentials.numel()))


def consecutive_frame_pairs(
    tracks: pd.DataFrame, track_columns: Sequence[str] = ("fov_name", "track_id"), time_column: str = "t"
) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of every pair of frames ``t`` and ``t + 1`` of the same track.

    Parameters
    ----------
    tracks : pd.DataFrame
        One row per cell, with the ``track_columns`` and ``time_column``; any row order.
    track_columns : sequence of str
        Columns that together identify a track.
    time_column : str
        Frame column.

    Returns
    -------
    tuple of np.ndarray
        ``(earlier, later)`` positions into ``tracks``.
    """
    tracks = tracks.reset_index(drop=True)
    earlier, later = adjacent_pairs(tracks, list(track_columns), time_column)
    t = tracks[time_column].to_numpy()
    next_frame = t[later] - t[earlier] == 1
    return earlier[next_frame], later[next_frame]


def temporal_smoothness(embeddings: Any, earlier: Any, later: Any) -> float:
    """Mean cosine distance between consecutive frames of a track, over that between random pairs of cells.

    The random-pair distance is the exact mean over all pairs of distinct cells (computed from the
    sum of the normalized embeddings, without an ``N x N`` matrix), so the ratio is scale-free and
    has no sampling noise. Lower is smoother: near 0 when a cell's embedding barely changes from
    one frame to the next compared with the spread of all cells; 1 when consecutive frames are no
    closer than random cells.

    Parameters
    ----------
    embeddings : array-like
        ``(N, D)`` embeddings.
    earlier, later : array-like
        Row positions of consecutive frames (see :func:`consecutive_frame_pairs`).

    Returns
    -------
    float
        The ratio; NaN without pairs, or when all cells share one direction (collapse).
    """
    z = F.normalize(_double(embeddings), dim=1)
    earlier, later = (
        torch.as_tensor(np.asarray(earlier, dtype=np.int64)),
        torch.as_tensor(np.asarray(later, dtype=np.int64)),
    )
    n = z.shape[0]
    if earlier.numel() == 0 or n < 2:
        return float("nan")
    adjacent = (1 - (z[earlier] * z[later]).sum(1)).mean()
    total = z.sum(0)
    mean_similarity = (total.dot(total) - z.pow(2).sum()) / (n * (n - 1))
    random = 1 - mean_similarity
    if random <= 1e-12:
        return float("nan")
    return float(adjacent / random)


def select_track_windows(
    tracks: pd.DataFrame,
    max_cells: int,
    seed: int = 0,
    track_columns: Sequence[str] = ("fov_name", "track_id"),
    time_column: str = "t",
) -> np.ndarray:
    """At most ``max_cells`` rows, spread over as many tracks as possible, each track a run of consecutive frames.

    Every track gets a window of its ``w`` consecutive rows in time order (all of them when it has
    fewer), starting at a seeded random frame, with ``w`` the largest length whose windows fit in
    ``max_cells`` (at least 2, so that consecutive frames can be compared). When even 2 frames of
    every track do not fit, the tracks are taken in a seeded random order until the budget is spent.
    Vectorized; the same table and seed give the same rows.

    Parameters
    ----------
    tracks : pd.DataFrame
        One row per cell with the ``track_columns`` and ``time_column``.
    max_cells : int
        Largest number of rows returned.
    seed : int
        Seed of the window starts and of the track order.
    track_columns : sequence of str
        Columns that together identify a track.
    time_column : str
        Frame column.

    Returns
    -------
    np.ndarray
        Sorted row positions into ``tracks``.
    """
    require_columns(tracks, [*track_columns, time_column], what="tracks")
    if max_cells < 1:
        raise ValueError(f"max_cells must be >= 1, got {max_cells}.")
    if len(tracks) <= max_cells:
        return np.arange(len(tracks))
    codes = tracks.groupby(list(track_columns), sort=True, observed=True).ngroup().to_numpy()
    order = np.lexsort((tracks[time_column].to_numpy(), codes))
    counts = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    totals = np.minimum(counts[None, :], np.arange(1, counts.max() + 1)[:, None]).sum(1)  # cells kept at w = 1, 2, ...
    window = max(int(np.searchsorted(totals, max_cells, side="right")), 2)
    sizes = np.minimum(counts, window)
    rng = np.random.default_rng(seed)
    offsets = np.floor(rng.random(len(counts)) * (counts - sizes + 1)).astype(np.int64)
    chosen = rng.permutation(len(counts))
    taken = np.minimum(sizes[chosen], np.maximum(max_cells - (np.cumsum(sizes[chosen]) - sizes[chosen]), 0))
    chosen, taken = chosen[taken > 0], taken[taken > 0]
    first = np.repeat(starts[chosen] + offsets[chosen], taken)
    within = np.arange(taken.sum()) - np.repeat(np.cumsum(taken) - taken, taken)
    return np.sort(order[first + within])


def _is_missing(values: pd.Series) -> np.ndarray:
    return (values.isna() | values.astype(str).str.strip().str.lower().isin(MISSING_LABELS)).to_numpy()


def representation_metrics(
    features: Any,
    projections: Any | None,
    tracks: pd.DataFrame,
    labels: Mapping[str, Any] | None = None,
    k: int = 20,
    seed: int = 0,
    track_columns: Sequence[str] = ("fov_name", "track_id"),
    time_column: str = "t",
) -> dict[str, float]:
    """Compute every measure of this module for one set of cells, named as ``OnlineEvaluation`` logs them.

    - ``knn_accuracy/<label>`` and ``linear_probe/<label>`` (features, per label, on the cells whose
      label is annotated: see :data:`MISSING_LABELS`);
    - ``effective_rank/features`` and ``effective_rank/projections``;
    - ``alignment`` (of the projections of consecutive frames of a track: the positive pairs a
      time-contrastive model is trained to bring together) and ``uniformity`` (projections);
    - ``temporal_smoothness`` (features);
    - ``cells``: the number of cells.

    Parameters
    ----------
    features : array-like
        ``(N, D)`` backbone embeddings.
    projections : array-like, optional
        ``(N, P)`` projection-head outputs; without them, alignment, uniformity and the
        projections' effective rank use the features.
    tracks : pd.DataFrame
        ``N`` rows with the ``track_columns`` and ``time_column``.
    labels : Mapping[str, array-like], optional
        ``N`` values per label name.
    k : int
        Neighbors of the kNN vote.
    seed : int
        Seed of the track split.
    track_columns : sequence of str
        Columns that together identify a track.
    time_column : str
        Frame column.

    Returns
    -------
    dict[str, float]
        Name to value; a value is NaN where it is undefined (e.g. a label with one class).
    """
    tracks = tracks.reset_index(drop=True)
    require_columns(tracks, [*track_columns, time_column], what="tracks")
    features = _double(features)
    projections = features if projections is None else _double(projections)
    if not len(tracks) == features.shape[0] == projections.shape[0]:
        raise ValueError(
            f"{len(tracks)} tracking rows, {features.shape[0]} features and {projections.shape[0]} projections."
        )
    groups = tracks[list(track_columns)]
    metrics: dict[str, float] = {}
    for name, values in (labels or {}).items():
        values = pd.Series(np.asarray(values, dtype=object))
        annotated = ~_is_missing(values)
        kept = torch.from_numpy(annotated)
        metrics[f"knn_accuracy/{name}"] = knn_accuracy(
            features[kept], values[annotated].astype(str), groups[annotated], k=k, seed=seed
        )
        metrics[f"linear_probe/{name}"] = linear_probe_score(
            features[kept], values[annotated].astype(str), groups[annotated], seed=seed
        )
    metrics["effective_rank/features"] = effective_rank(features)
    metrics["effective_rank/projections"] = effective_rank(projections)
    earlier, later = consecutive_frame_pairs(tracks, track_columns, time_column)
    metrics["alignment"] = alignment(projections[earlier], projections[later])
    metrics["uniformity"] = uniformity(projections)
    metrics["temporal_smoothness"] = temporal_smoothness(features, earlier, later)
    metrics["cells"] = float(len(tracks))
    return metrics
