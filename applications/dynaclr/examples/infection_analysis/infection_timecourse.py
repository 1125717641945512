"""Fraction of cells predicted infected over time, per condition, from DynaCLR embeddings.

A linear classifier of ``infection_state`` is trained on the annotated cells of an embeddings
store (the AnnData zarr store that ``dynaclr predict`` writes), then predicts every cell. The
cells of each condition (a set of wells: infected vs uninfected) are counted per time point,
and the fraction predicted infected is written to a CSV and plotted against hours post
infection, next to the annotated fraction where annotations exist.

Usage, from the repository root, after the README walk-through (``embeddings.zarr`` from
``dynaclr predict`` on the plate of ``make_synthetic_data.py``)::

    uv run python applications/dynaclr/examples/infection_analysis/infection_timecourse.py

Other data: ``--embeddings``, ``--annotations``, ``--well-condition A/1=mock --well-condition
A/2=DENV`` (one per well), ``--interval-minutes`` and ``--output-dir``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from viscy_data import LABEL_INFECTION_STATE
from viscy_data.synthetic import DEFAULT_WELL_CONDITIONS
from viscy_utils.evaluation.annotation import load_annotation_anndata
from viscy_utils.evaluation.linear_classifier import predict_with_classifier, train_linear_classifier

matplotlib.use("Agg")  # write the figure to a file, no display needed

TASK = "infection_state"
INFECTED = "infected"
TIMECOURSE_COLUMNS = [
    "condition",
    "t",
    "hours_post_infection",
    "n_cells",
    "n_predicted_infected",
    "fraction_predicted_infected",
    "n_annotated",
    "fraction_annotated_infected",
]
"""Columns of the time-course CSV, in order."""


def annotate_and_predict(
    adata: anndata.AnnData, annotations_path: str | Path, split_train_data: float = 0.8
) -> tuple[anndata.AnnData, dict[str, float]]:
    """Join the infection annotations, train a linear classifier on the annotated cells, predict all cells.

    Parameters
    ----------
    adata : anndata.AnnData
        Embeddings whose ``obs`` has ``fov_name`` and ``id``.
    annotations_path : str or Path
        CSV with ``fov_name``, ``id`` and ``infection_state`` (0 uninfected, 1 infected, -1 unknown).
    split_train_data : float
        Fraction of the annotated tracks used for training; the rest gives the validation metrics.

    Returns
    -------
    tuple
        ``adata`` with ``obs["infection_state"]`` (names, NaN where not annotated) and
        ``obs["predicted_infection_state"]``, and the classifier's metrics.
    """
    state_names = {label: name for name, label in LABEL_INFECTION_STATE.items()}
    adata = load_annotation_anndata(adata, annotations_path, TASK, categories=state_names)
    labels = adata.obs[TASK]
    annotated = (labels.notna() & (labels != "unknown")).to_numpy()
    print(f"Training a linear classifier of {TASK} on {int(annotated.sum())} of {adata.n_obs} annotated cells")
    pipeline, metrics = train_linear_classifier(
        adata[annotated].copy(),
        TASK,
        split_train_data=split_train_data,
        classifier_params={"max_iter": 1000, "class_weight": "balanced"},
    )
    return predict_with_classifier(adata, pipeline, TASK), metrics


def infection_timecourse(
    obs: pd.DataFrame, well_conditions: Mapping[str, str], interval_minutes: float
) -> pd.DataFrame:
    """Count cells and predicted (and annotated) infected cells per condition and time point.

    Parameters
    ----------
    obs : pd.DataFrame
        One row per cell with ``fov_name`` (``"A/1/0"``), ``t``, ``predicted_infection_state``
        and, optionally, ``infection_state`` (NaN where not annotated).
    well_conditions : Mapping[str, str]
        Well (``"A/1"``) to condition; cells of other wells are left out.
    interval_minutes : float
        Time between frames; ``hours_post_infection = t * interval_minutes / 60``.

    Returns
    -------
    pd.DataFrame
        Columns :data:`TIMECOURSE_COLUMNS`, one row per condition and time point, sorted.

    Raises
    ------
    ValueError
        If no cell lies in one of the wells.
    """
    fov_names = obs["fov_name"].astype(str).str.strip("/")
    wells = fov_names.str.split("/").str[:2].str.join("/").to_numpy()
    annotations = obs[TASK] if TASK in obs else pd.Series(np.nan, index=obs.index)
    annotated = (annotations.notna() & (annotations != "unknown")).to_numpy()
    table = pd.DataFrame(
        {
            "condition": pd.Series(wells).map(dict(well_conditions)).to_numpy(),
            "t": obs["t"].to_numpy(),
            "predicted": (obs[f"predicted_{TASK}"] == INFECTED).to_numpy(),
            "annotated": annotated,
            "annotated_infected": annotated & (annotations == INFECTED).to_numpy(),
        }
    )
    outside = table["condition"].isna().to_numpy()
    if outside.all():
        raise ValueError(f"No cell lies in the wells {sorted(well_conditions)}; wells present: {sorted(set(wells))}.")
    if outside.any():
        print(f"Leaving out {int(outside.sum())} cells of wells without a condition: {sorted(set(wells[outside]))}")
    grouped = table[~outside].groupby(["condition", "t"], sort=True)
    course = grouped.agg(
        n_cells=("predicted", "size"),
        n_predicted_infected=("predicted", "sum"),
        n_annotated=("annotated", "sum"),
        n_annotated_infected=("annotated_infected", "sum"),
    ).reset_index()
    course["hours_post_infection"] = course["t"] * interval_minutes / 60.0
    course["fraction_predicted_infected"] = course["n_predicted_infected"] / course["n_cells"]
    course["fraction_annotated_infected"] = (course["n_annotated_infected"] / course["n_annotated"]).where(
        course["n_annotated"] > 0
    )
    return course[TIMECOURSE_COLUMNS]


def plot_timecourse(course: pd.DataFrame, figure_path: Path) -> None:
    """Plot the predicted (solid) and annotated (dashed) infected fraction per condition.

    Parameters
    ----------
    course : pd.DataFrame
        What :func:`infection_timecourse` returns.
    figure_path : Path
        PNG to write.
    """
    figure, axes = plt.subplots(figsize=(6, 4))
    for index, (condition, rows) in enumerate(course.groupby("condition", sort=True)):
        color = f"C{index}"
        hours = rows["hours_post_infection"]
        axes.plot(hours, rows["fraction_predicted_infected"], "o-", color=color, label=f"{condition} (predicted)")
        if rows["fraction_annotated_infected"].notna().any():
            axes.plot(hours, rows["fraction_annotated_infected"], "--", color=color, label=f"{condition} (annotated)")
    axes.set(xlabel="hours post infection", ylabel="fraction of cells infected", ylim=(-0.05, 1.05))
    axes.legend()
    figure.tight_layout()
    figure.savefig(figure_path, dpi=120)
    plt.close(figure)


def parse_well_conditions(pairs: Sequence[str] | None) -> dict[str, str]:
    """``["A/1=mock", "A/2=DENV"]`` to ``{"A/1": "mock", "A/2": "DENV"}``; the synthetic plate's wells when None.

    Raises
    ------
    ValueError
        For a pair that is not ``<row>/<col>=<condition>``.
    """
    if not pairs:
        return dict(DEFAULT_WELL_CONDITIONS)
    conditions = {}
    for pair in pairs:
        well, separator, condition = pair.partition("=")
        if not separator or well.count("/") != 1 or not condition:
            raise ValueError(f"--well-condition {pair!r} must look like '<row>/<col>=<condition>', e.g. 'A/1=mock'.")
        conditions[well.strip("/")] = condition
    return conditions


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", type=Path, default=Path("embeddings.zarr"), help="default: %(default)s")
    parser.add_argument(
        "--annotations", type=Path, default=Path("synthetic/annotations.csv"), help="default: %(default)s"
    )
    parser.add_argument(
        "--well-condition",
        action="append",
        metavar="WELL=CONDITION",
        help="condition of a well, repeated per well (default: the synthetic plate's A/1, B/1 uninfected, "
        "A/2, B/2 infected)",
    )
    parser.add_argument("--interval-minutes", type=float, default=30.0, help="time between frames (%(default)s)")
    parser.add_argument("--output-dir", type=Path, default=Path("infection_analysis"), help="default: %(default)s")
    parser.add_argument("--overwrite", action="store_true", help="replace the CSV and PNG of an earlier run")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the analysis; exit status 1 when outputs exist without --overwrite or an input is invalid."""
    args = parse_args(argv)
    try:
        well_conditions = parse_well_conditions(args.well_condition)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    csv_path = args.output_dir / "infection_timecourse.csv"
    figure_path = args.output_dir / "infection_timecourse.png"
    existing = [str(path) for path in (csv_path, figure_path) if path.exists()]
    if existing and not args.overwrite:
        print(f"error: refusing to overwrite {', '.join(existing)}; pass --overwrite to replace them.", file=sys.stderr)
        return 1
    print(f"Reading {args.embeddings}")
    adata, metrics = annotate_and_predict(anndata.read_zarr(args.embeddings), args.annotations)
    print(f"Classifier accuracy: train {metrics['train_accuracy']:.3f}, validation {metrics['val_accuracy']:.3f}")
    course = infection_timecourse(adata.obs, well_conditions, args.interval_minutes)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    course.to_csv(csv_path, index=False)
    plot_timecourse(course, figure_path)
    final = course.loc[course.groupby("condition")["t"].idxmax()]
    for row in final.itertuples(index=False):
        print(
            f"{row.condition}: {row.fraction_predicted_infected:.0%} predicted infected "
            f"at {row.hours_post_infection:g} h ({row.n_cells} cells)"
        )
    print(f"Wrote {csv_path} and {figure_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
