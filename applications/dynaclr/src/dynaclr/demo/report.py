"""``report.md``: the demo's scores, what ran with which settings, where the files are and how long it took."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dynaclr.demo.evaluation import EmbeddingScores

__all__ = ["probe_scores_table", "results_table", "write_report"]

_COLUMNS = (
    "embedding",
    "infection AUROC",
    "infection balanced accuracy",
    "track smoothness (lower is smoother)",
    "dynamic range",
)


def _mean_std(value: tuple[float, float]) -> str:
    return f"{value[0]:.3f} ± {value[1]:.3f}"


def results_table(scores: Mapping[str, EmbeddingScores]) -> str:
    """Format the scores as a Markdown table, one row per set of embeddings.

    Parameters
    ----------
    scores : Mapping
        Name of each set of embeddings to its scores.

    Returns
    -------
    str
        The table, with a header row.
    """
    lines = [f"| {' | '.join(_COLUMNS)} |", f"|{'|'.join('---' for _ in _COLUMNS)}|"]
    for name, score in scores.items():
        cells = [
            name,
            _mean_std(score.auroc),
            _mean_std(score.balanced_accuracy),
            f"{score.smoothness:.3f}",
            f"{score.dynamic_range:.3f}",
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def probe_scores_table(scores: Mapping[str, EmbeddingScores]) -> str:
    """Format the out-of-fold probe scores as a Markdown table: their AUROC and the cells on each side of 0.5.

    Parameters
    ----------
    scores : Mapping
        Name of each set of embeddings to its scores (``probe_scores`` and ``infected``).

    Returns
    -------
    str
        The table, with a header row.
    """
    from sklearn.metrics import roc_auc_score

    lines = [
        "| embedding | out-of-fold AUROC | uninfected cells scored infected | infected cells scored uninfected |",
        "|---|---|---|---|",
    ]
    for name, score in scores.items():
        called = score.probe_scores > 0.5
        false_positive = called[~score.infected].mean()
        false_negative = (~called[score.infected]).mean()
        auroc = roc_auc_score(score.infected, score.probe_scores)
        lines.append(f"| {name} | {auroc:.3f} | {false_positive:.1%} | {false_negative:.1%} |")
    return "\n".join(lines)


def _bullets(items: Mapping[str, Any]) -> str:
    return "\n".join(f"- {name}: `{value}`" for name, value in items.items())


def write_report(
    path: Path,
    *,
    scores: Mapping[str, EmbeddingScores],
    summary: str,
    online_table: str,
    settings: Mapping[str, Any],
    files: Mapping[str, Path],
    commands: Mapping[str, str],
    timings: Mapping[str, float],
) -> Path:
    """Write ``report.md``.

    Parameters
    ----------
    path : Path
        The Markdown file to write.
    scores : Mapping
        Name of each set of embeddings to its scores (:func:`results_table`).
    summary : str
        A paragraph on what was trained and evaluated.
    online_table : str
        Markdown table of the online evaluation per epoch (:func:`~dynaclr.demo.curves.online_metrics_table`).
    settings : Mapping
        Settings of the run, by name.
    files : Mapping
        What each output is, to its path.
    commands : Mapping
        What each command does, to the command line that repeats it.
    timings : Mapping
        Seconds each stage took, by stage.

    Returns
    -------
    Path
        ``path``.
    """
    n_cells = {score.n_cells for score in scores.values()}
    n_tracks = {score.n_tracks for score in scores.values()}
    timing_rows = "\n".join(f"| {stage} | {seconds:.1f} |" for stage, seconds in timings.items())
    command_lines = "\n".join(f"# {what}\n{command}" for what, command in commands.items())
    text = f"""# DynaCLR demo

{summary}

## Scores on the held-out experiment

{results_table(scores)}

{"/".join(map(str, sorted(n_cells)))} annotated cells in {"/".join(map(str, sorted(n_tracks)))} tracks.
The infection classifier is a logistic regression on standard-scaled embeddings (balanced class weights),
trained on 80% of the tracks and validated on the other 20%; the scores are the mean ± standard deviation
over {settings.get("probe_splits", "several")} random track splits, the same splits for every row.
Track smoothness is the mean distance between consecutive frames of a cell over the mean distance between
random pairs of cells (cosine, standard-scaled embeddings); the dynamic range is the peak of the random-pair
distances minus the peak of the consecutive-frame distances.

![embeddings](embeddings.png)

### Infection probe scores by infection state

{probe_scores_table(scores)}

Each cell scored by a logistic-regression probe (as above) fitted on the other folds of a
{settings.get("probe_splits", "several")}-fold split of the tracks, so no cell is scored by a probe that saw its
track; a cell is called infected above 0.5. `probe_scores.png` shows the histograms of these scores, one per
infection state: the less they overlap, the better the embedding separates the states. A PCA shows only the two
directions of largest variance, which need not be those of the infection.

![infection probe scores](probe_scores.png)

## Representation quality during training

{online_table}

After each epoch, `viscy_utils.callbacks.OnlineEvaluation` embedded a fixed sample of the held-out
experiment's cells (a run of consecutive frames from each of many tracks) and logged, on the encoder's
features: the balanced accuracy of infection state by a 20-nearest-neighbour vote (cosine, each vote weighted
by the inverse of its class's size) and by a
logistic-regression probe, each fitted on half of the tracks and scored on the other half; the effective
rank of the features and of the projections (1 means collapse); and the track smoothness (mean cosine
distance of consecutive frames over that of random pairs; lower is smoother). The last rows score every
annotated held-out cell the same way, for the untrained and the trained encoder.

![training curves](training_curves.png)

## Settings

{_bullets(settings)}

## Files

{_bullets({what: str(where) for what, where in files.items()})}

## Repeat a stage

```sh
{command_lines}
```

## Timings

| stage | seconds |
|---|---|
{timing_rows}
"""
    path.write_text(text)
    return path
