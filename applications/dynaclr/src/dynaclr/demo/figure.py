"""The demo's figures of the held-out cells' embeddings.

``embeddings.png``: PCA, coloured by infection state and by time. ``probe_scores.png``: histograms of
an infection probe's out-of-fold scores by infection state.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from viscy_utils.evaluation.dimensionality_reduction import compute_pca

__all__ = ["plot_embeddings", "plot_probe_scores"]

_STATE_COLOURS = {"uninfected": "#4c72b0", "infected": "#dd5143"}


def plot_embeddings(embeddings: Mapping[str, Any], output_path: str | Path, dpi: int = 80) -> Path:
    """Plot the first two principal components of each set of embeddings side by side, one column per set.

    The top row colours cells by ``obs["infection_state"]``, the bottom row by
    ``obs["hours_post_infection"]``.

    Parameters
    ----------
    embeddings : Mapping
        Title of each column to its AnnData embeddings (standard-scaled before the PCA).
    output_path : str or Path
        PNG to write.
    dpi : int
        Resolution.

    Returns
    -------
    Path
        ``output_path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(
        2, len(embeddings), figsize=(4 * len(embeddings) + 1, 7), squeeze=False, layout="constrained"
    )
    for column, (title, adata) in enumerate(embeddings.items()):
        pcs, _ = compute_pca(adata, n_components=2)
        states = adata.obs["infection_state"].astype(str).to_numpy()
        top, bottom = axes[0, column], axes[1, column]
        for state, colour in _STATE_COLOURS.items():
            chosen = states == state
            top.scatter(pcs[chosen, 0], pcs[chosen, 1], s=4, c=colour, label=state, alpha=0.7, linewidths=0)
        top.legend(loc="best", fontsize=8, markerscale=3, frameon=False)
        hours = adata.obs["hours_post_infection"].to_numpy(dtype=np.float64)
        points = bottom.scatter(pcs[:, 0], pcs[:, 1], s=4, c=hours, cmap="viridis", alpha=0.8, linewidths=0)
        top.set_title(f"{title}\ninfection state", fontsize=10)
        bottom.set_title("hours post infection", fontsize=10)
        for axis in (top, bottom):
            axis.set_xlabel("PC 1")
            axis.set_ylabel("PC 2")
            axis.set_xticks([])
            axis.set_yticks([])
    # one colour bar beside the bottom row, taking its width from every column alike
    figure.colorbar(points, ax=axes.ravel().tolist(), label="hours post infection", shrink=0.45, anchor=(0.0, 0.0))
    output_path = Path(output_path)
    figure.savefig(output_path, dpi=dpi)
    plt.close(figure)
    return output_path


def plot_probe_scores(
    scores: Mapping[str, tuple[np.ndarray, np.ndarray]], output_path: str | Path, bins: int = 20, dpi: int = 80
) -> Path:
    """Plot, for each set of embeddings, the histograms of its probe scores of uninfected and of infected cells.

    Each histogram is normalized to its class (the infected cells are the minority), so the overlap
    of the two shows how many cells of each class the probe cannot tell apart; the title gives the
    AUROC of these scores.

    Parameters
    ----------
    scores : Mapping
        Title of each panel to ``(probe_scores, infected)``: the out-of-fold probability of infection
        of each cell (:func:`~dynaclr.demo.evaluation.out_of_fold_probe_scores`) and whether it is
        infected.
    output_path : str or Path
        PNG to write.
    bins : int
        Bins over ``[0, 1]``.
    dpi : int
        Resolution.

    Returns
    -------
    Path
        ``output_path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from sklearn.metrics import roc_auc_score

    edges = np.linspace(0.0, 1.0, bins + 1)
    figure, axes = plt.subplots(1, len(scores), figsize=(4 * len(scores), 3.2), squeeze=False, layout="constrained")
    for axis, (title, (probabilities, infected)) in zip(axes[0], scores.items(), strict=True):
        for state, colour in _STATE_COLOURS.items():
            chosen = infected if state == "infected" else ~infected
            axis.hist(
                probabilities[chosen],
                bins=edges,
                density=True,
                color=colour,
                alpha=0.55,
                label=f"{state} ({int(chosen.sum())})",
            )
        axis.set_title(f"{title}\nAUROC {roc_auc_score(infected, probabilities):.3f}", fontsize=10)
        axis.set_xlabel("probe score (probability of infection)")
        axis.set_yticks([])
        axis.set_xlim(0.0, 1.0)
        axis.legend(loc="upper center", fontsize=8, frameon=False)
    axes[0, 0].set_ylabel("cells (density per state)")
    output_path = Path(output_path)
    figure.savefig(output_path, dpi=dpi)
    plt.close(figure)
    return output_path
