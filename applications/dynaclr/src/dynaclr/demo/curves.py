"""The demo's representation quality during training: the online metrics per epoch, as a table and a figure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from viscy_utils.evaluation.representation import representation_metrics

__all__ = ["CURVE_COLUMNS", "metrics_of_embeddings", "online_metrics", "online_metrics_table", "plot_online_metrics"]

CURVE_COLUMNS = {
    "knn_accuracy/infection_state": "kNN infection",
    "linear_probe/infection_state": "probe infection",
    "effective_rank/features": "eff. rank features",
    "effective_rank/projections": "eff. rank projections",
    "temporal_smoothness": "smoothness",
}
"""The metrics of :class:`~viscy_utils.callbacks.OnlineEvaluation` shown (without ``online_eval/``), with headers."""


def online_metrics(metrics_csv: str | Path) -> pd.DataFrame:
    """Read the online evaluation's rows of a ``CSVLogger``'s ``metrics.csv``: one per evaluated epoch.

    Parameters
    ----------
    metrics_csv : str or Path
        The run's ``metrics.csv``.

    Returns
    -------
    pd.DataFrame
        Indexed by epoch (from 1: the epochs trained when it was evaluated), one column per
        ``online_eval/`` metric, without the prefix; empty when the run logged none.
    """
    logged = pd.read_csv(metrics_csv)
    columns = [column for column in logged.columns if column.startswith("online_eval/")]
    if not columns:
        return pd.DataFrame()
    rows = logged.dropna(subset=columns, how="all")
    table = rows.groupby("epoch")[columns].last()
    table.index = table.index.astype(int) + 1
    table.index.name = "epochs trained"
    return table.rename(columns=lambda column: column.removeprefix("online_eval/"))


def metrics_of_embeddings(adata: Any, seed: int = 0) -> dict[str, float]:
    """Compute the online evaluation's metrics of one embedding store's cells (features and projections).

    Parameters
    ----------
    adata : AnnData
        Embeddings with ``fov_name``, ``track_id``, ``t`` and ``infection_state`` in ``obs``
        (:func:`~dynaclr.demo.evaluation.load_annotated_embeddings`), projections in
        ``obsm["X_projections"]`` when the store has them.
    seed : int
        Seed of the track split.

    Returns
    -------
    dict
        The metrics, named as in :data:`CURVE_COLUMNS`.
    """
    projections = adata.obsm["X_projections"] if "X_projections" in adata.obsm else None
    obs = adata.obs.reset_index(drop=True)
    return representation_metrics(
        adata.X,
        projections,
        obs[["fov_name", "track_id", "t"]],
        labels={"infection_state": obs["infection_state"].astype(str).to_numpy()},
        seed=seed,
    )


def _cell(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def online_metrics_table(curves: pd.DataFrame, references: Mapping[str, Mapping[str, float]]) -> str:
    """Return a Markdown table: a row per evaluated epoch, then a row per reference (e.g. the untrained encoder).

    Parameters
    ----------
    curves : pd.DataFrame
        :func:`online_metrics` of the run.
    references : Mapping
        Name of each reference row to its metrics (:func:`metrics_of_embeddings`).

    Returns
    -------
    str
        The table.
    """
    header = "| | " + " | ".join(CURVE_COLUMNS.values()) + " |"
    lines = [header, "|---" * (len(CURVE_COLUMNS) + 1) + "|"]
    for epoch, row in curves.iterrows():
        lines.append(f"| epoch {epoch} | " + " | ".join(_cell(row.get(key)) for key in CURVE_COLUMNS) + " |")
    for name, metrics in references.items():
        lines.append(f"| {name} | " + " | ".join(_cell(metrics.get(key)) for key in CURVE_COLUMNS) + " |")
    return "\n".join(lines)


def plot_online_metrics(
    curves: pd.DataFrame, untrained: Mapping[str, float], output_path: str | Path, dpi: int = 80
) -> Path:
    """Plot kNN accuracy of infection state and the effective ranks against epoch, the untrained encoder dashed.

    Parameters
    ----------
    curves : pd.DataFrame
        :func:`online_metrics` of the run.
    untrained : Mapping
        The untrained encoder's metrics (:func:`metrics_of_embeddings`), drawn as horizontal lines.
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

    panels = {
        "infection state, held-out experiment": ["knn_accuracy/infection_state", "linear_probe/infection_state"],
        "effective rank": ["effective_rank/features", "effective_rank/projections"],
    }
    figure, axes = plt.subplots(1, len(panels), figsize=(9, 3.5), layout="constrained")
    for axis, (title, keys) in zip(axes, panels.items(), strict=True):
        for key, colour in zip(keys, ("#dd5143", "#4c72b0"), strict=True):
            if key in curves:
                axis.plot(curves.index, curves[key], marker="o", color=colour, label=CURVE_COLUMNS[key])
            if key in untrained:
                axis.axhline(untrained[key], color=colour, linestyle="--", linewidth=1, label="untrained")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("epochs trained")
        axis.legend(fontsize=8, frameon=False)
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output_path, dpi=dpi)
    plt.close(figure)
    return Path(output_path)
