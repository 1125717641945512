"""Scores of cell embeddings on the demo's held-out experiment: infection linear probe and temporal smoothness."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from viscy_utils.evaluation.annotation import load_annotation_anndata
from viscy_utils.evaluation.linear_classifier import train_linear_classifier
from viscy_utils.evaluation.smoothness import compute_embeddings_smoothness

__all__ = [
    "INFECTION_CLASSES",
    "EmbeddingScores",
    "load_annotated_embeddings",
    "out_of_fold_probe_scores",
    "score_embeddings",
]

INFECTION_CLASSES = {0: "uninfected", 1: "infected"}
"""Names of the ``infection_state`` codes of the synthetic annotations."""

_TASK = "infection_state"


@contextlib.contextmanager
def _quiet_classifier_log() -> Iterator[None]:
    """Hide the classifier's line per training (one per split and embedding set) while scoring."""
    logger = logging.getLogger(train_linear_classifier.__module__)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class EmbeddingScores:
    """How well one set of embeddings tells infected from uninfected cells, and how smooth its tracks are.

    Attributes
    ----------
    auroc : tuple[float, float]
        Validation AUROC of the infection classifier: mean and standard deviation over the splits.
    balanced_accuracy : tuple[float, float]
        Validation balanced accuracy (mean recall of the two classes): mean and standard deviation.
    smoothness : float
        Mean distance between consecutive frames of a track over that of random pairs of cells
        (lower is smoother).
    dynamic_range : float
        Peak of the random-pair distances minus peak of the consecutive-frame distances (higher
        separates a track's neighbours from other cells better).
    n_cells : int
        Annotated cells scored.
    n_tracks : int
        Tracks among them.
    probe_scores : np.ndarray
        ``(n_cells,)`` probability of infection that a probe fitted without the cell's track gives
        each cell (:func:`out_of_fold_probe_scores`).
    infected : np.ndarray
        ``(n_cells,)`` whether each cell is infected, in the same order.
    """

    auroc: tuple[float, float]
    balanced_accuracy: tuple[float, float]
    smoothness: float
    dynamic_range: float
    n_cells: int
    n_tracks: int
    probe_scores: np.ndarray
    infected: np.ndarray


def load_annotated_embeddings(store: str | Path, annotations: str | Path) -> Any:
    """Read an AnnData embedding store and add its cells' ``infection_state`` from the annotations CSV.

    Parameters
    ----------
    store : str or Path
        AnnData zarr store written by :class:`~viscy_utils.callbacks.EmbeddingWriter`.
    annotations : str or Path
        Annotations CSV with ``fov_name``, ``id`` and ``infection_state``.

    Returns
    -------
    AnnData
        The annotated cells (those without an annotation are left out), with ``obs["infection_state"]``
        named by :data:`INFECTION_CLASSES`.
    """
    import anndata

    adata = load_annotation_anndata(anndata.read_zarr(store), annotations, _TASK, categories=INFECTION_CLASSES)
    return adata[adata.obs[_TASK].notna().to_numpy()].copy()


def score_embeddings(adata: Any, n_splits: int = 5, seed: int = 0) -> EmbeddingScores:
    """Score embeddings with a logistic-regression probe of infection state and the smoothness of their tracks.

    The probe is :func:`~viscy_utils.evaluation.linear_classifier.train_linear_classifier` (standard
    scaling, balanced class weights), trained on 80% of the tracks and validated on the other 20%,
    for ``n_splits`` random splits by track (seeds ``seed`` to ``seed + n_splits - 1``): the same
    splits for every set of embeddings of the same cells.

    Parameters
    ----------
    adata : AnnData
        Embeddings with ``fov_name``, ``track_id``, ``t`` and ``infection_state`` in ``obs``.
    n_splits : int
        Random track splits averaged over.
    seed : int
        Seed of the first split.

    Returns
    -------
    EmbeddingScores
        The scores.
    """
    aurocs, balanced = [], []
    for split in range(n_splits):
        with _quiet_classifier_log():
            _, metrics = train_linear_classifier(
                adata,
                _TASK,
                classifier_params={"max_iter": 2000, "class_weight": "balanced"},
                split_train_data=0.8,
                random_seed=seed + split,
            )
        aurocs.append(metrics["val_auroc"])
        balanced.append(np.mean([metrics[f"val_{label}_recall"] for label in INFECTION_CLASSES.values()]))
    stats, _, per_track = compute_embeddings_smoothness(adata, random_seed=seed)
    return EmbeddingScores(
        auroc=_mean_std(aurocs),
        balanced_accuracy=_mean_std(balanced),
        smoothness=stats["smoothness_score"],
        dynamic_range=stats["dynamic_range"],
        n_cells=adata.n_obs,
        n_tracks=len(per_track),
        probe_scores=out_of_fold_probe_scores(adata, n_folds=n_splits, seed=seed),
        infected=(adata.obs[_TASK].astype(str) == INFECTION_CLASSES[1]).to_numpy(),
    )


def out_of_fold_probe_scores(adata: Any, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Score every cell with an infection probe fitted on the tracks of the other folds.

    The tracks (``fov_name`` and ``track_id``) are dealt into ``n_folds`` folds with the same
    share of infected cells (scikit-learn's ``StratifiedGroupKFold``); the cells of each fold are
    scored by a logistic regression (standard scaling, balanced class weights, as in
    :func:`score_embeddings`) fitted on the cells of the others, so no cell is scored by a probe
    that saw any frame of its track.

    Parameters
    ----------
    adata : AnnData
        Embeddings with ``fov_name``, ``track_id`` and ``infection_state`` in ``obs``.
    n_folds : int
        Folds of tracks (at least 2).
    seed : int
        Seed of the folds and of the classifier.

    Returns
    -------
    np.ndarray
        ``(n_cells,)`` probability of :data:`INFECTION_CLASSES` ``[1]``, in the order of ``adata``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(adata.X, dtype=np.float64)
    infected = (adata.obs[_TASK].astype(str) == INFECTION_CLASSES[1]).to_numpy()
    tracks = (adata.obs["fov_name"].astype(str) + "/" + adata.obs["track_id"].astype(str)).to_numpy()
    scores = np.empty(len(infected), dtype=np.float64)
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for train, held_out in folds.split(features, infected, groups=tracks):
        probe = make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed)
        )
        probe.fit(features[train], infected[train])
        scores[held_out] = probe.predict_proba(features[held_out])[:, 1]
    return scores


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return (float(finite.mean()), float(finite.std())) if finite.size else (float("nan"), float("nan"))
