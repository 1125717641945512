"""``dynaclr demo``: the whole DynaCLR workflow on a synthetic study, in one command.

Usage::

    dynaclr demo                              # -> demo_output/, about 3 minutes on 2 CPU cores
    dynaclr demo --quick --output-dir /tmp/d  # under a minute: smaller study, shorter training
    dynaclr demo --overwrite --seed 1         # replace the demo's outputs of an earlier run

Stages, each announced on its own line and timed:

1. write three synthetic experiments (:func:`dynaclr.example_experiments.write_example_experiments`,
   reporter relocalization phenotype) and their ``experiments.yml``;
2. train a ContrastiveModule with ``dynaclr fit -c fit.yml`` (the config is written first, so the
   training can be repeated by hand);
3. embed every cell of the held-out experiment with ``dynaclr predict``: the trained encoder, the same
   encoder at its initial weights, and per-cell intensity statistics;
4. score each on infection state and track smoothness, and write ``embeddings.png`` (PCA) and
   ``probe_scores.png`` (histograms of an infection probe's out-of-fold scores by infection state);
5. write ``report.md`` and print its table.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import yaml

from dynaclr.demo.settings import HELD_OUT_EXPERIMENT, QUICK, DemoSettings, demo_settings

__all__ = ["DEMO_OUTPUTS", "claim_output_dir", "main", "run_demo"]

DEMO_OUTPUTS = (
    "study",
    "fit.yml",
    "training",
    "predict_learned.yml",
    "predict_random.yml",
    "predict_intensity.yml",
    "embeddings",
    "embeddings.png",
    "probe_scores.png",
    "training_curves.png",
    "report.md",
    "linear_classifier.yml",
    "linear_classifiers",
)
"""What the demo writes in its output directory; ``--overwrite`` replaces these and nothing else."""

_EMBEDDINGS = {
    "learned": "DynaCLR (trained)",
    "random": "random encoder (untrained)",
    "intensity": "intensity features",
}
"""Embedding sets: file stem to the name in the report."""

_INTENSITY_MODEL = "dynaclr.demo.intensity.PatchIntensityFeatures"
"""Class path of the intensity-statistics baseline, predicted like a model."""

_N_STAGES = 5


def claim_output_dir(output_dir: Path, overwrite: bool) -> None:
    """Make ``output_dir`` ready: refuse a non-empty one unless ``overwrite``, then remove the demo's old outputs.

    Parameters
    ----------
    output_dir : Path
        The demo's output directory (created if missing).
    overwrite : bool
        Replace the entries of :data:`DEMO_OUTPUTS` found there; other files stay.

    Raises
    ------
    click.ClickException
        If ``output_dir`` is a file, or a non-empty directory and ``overwrite`` is False.
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise click.ClickException(f"--output-dir {output_dir} is a file, not a directory.")
    if output_dir.is_dir() and any(output_dir.iterdir()):
        if not overwrite:
            raise click.ClickException(
                f"{output_dir} exists and is not empty: nothing was done. Pass --overwrite to replace the demo's "
                "outputs in it, or choose another --output-dir."
            )
        for name in DEMO_OUTPUTS:
            path = output_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def _stage(number: int, title: str, timings: dict[str, float]) -> Iterator[None]:
    """Announce a stage, run it and record how long it took."""
    click.echo(f"[{number}/{_N_STAGES}] {title} ...")
    start = time.perf_counter()
    yield
    timings[title] = time.perf_counter() - start
    click.echo(f"[{number}/{_N_STAGES}] {title}: done in {timings[title]:.1f} s")


def _write_yaml(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _lightning(*args: str) -> Any:
    """Run a Lightning subcommand as ``dynaclr`` runs it, returning the CLI (errors propagate)."""
    from viscy_utils.cli import run_cli

    return run_cli(list(args))


def _accelerator() -> str:
    """``"gpu"`` with a CUDA device, else ``"cpu"``."""
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def run_demo(output_dir: Path, settings: DemoSettings, seed: int) -> dict[str, Any]:
    """Run every stage of the demo into an output directory already claimed with :func:`claim_output_dir`.

    Parameters
    ----------
    output_dir : Path
        Absolute output directory.
    settings : DemoSettings
        Sizes of the study and of the training.
    seed : int
        Seed of the study, of the weights and of the sampling.

    Returns
    -------
    dict
        ``scores`` (name to :class:`~dynaclr.demo.evaluation.EmbeddingScores`), ``table`` (the printed
        Markdown table), ``report`` and ``timings``.
    """
    from dynaclr.demo.configs import fit_config, linear_classifier_config, predict_config
    from dynaclr.demo.curves import metrics_of_embeddings, online_metrics, online_metrics_table, plot_online_metrics
    from dynaclr.demo.evaluation import load_annotated_embeddings, score_embeddings
    from dynaclr.demo.figure import plot_embeddings, plot_probe_scores
    from dynaclr.demo.report import results_table, write_report
    from dynaclr.example_experiments import EXAMPLE_EXPERIMENTS, write_example_experiments

    timings: dict[str, float] = {}
    study = output_dir / "study"
    with _stage(1, "Writing the synthetic study", timings):
        experiments_yaml = write_example_experiments(
            study,
            seed=seed,
            infection_phenotype="relocalization",
            plate_settings={"cells_per_fov": settings.cells_per_fov},
        )
        click.echo(f"    {len(EXAMPLE_EXPERIMENTS)} experiments: {experiments_yaml}")

    fit = fit_config(settings, experiments_yaml, output_dir / "training", seed)
    accelerator = _accelerator()
    fit["trainer"]["accelerator"] = accelerator
    fit_yml = _write_yaml(output_dir / "fit.yml", fit)
    with _stage(2, f"Training on {accelerator.upper()}: dynaclr fit -c {fit_yml}", timings):
        trainer = _lightning("fit", "-c", str(fit_yml)).trainer
        checkpoint = Path(trainer.checkpoint_callback.last_model_path)
        # the sampler's epoch can be shorter than limit_train_batches: report what training ran
        epochs, batches_per_epoch = trainer.current_epoch, trainer.num_training_batches
        metrics_csv = Path(trainer.logger.log_dir) / "metrics.csv"

    stores = {name: output_dir / "embeddings" / f"{name}.zarr" for name in _EMBEDDINGS}
    models = {"learned": fit["model"], "random": fit["model"], "intensity": {"class_path": _INTENSITY_MODEL}}
    predict_ymls = {}
    for name, model in models.items():
        config = predict_config(fit, model, stores[name], checkpoint if name == "learned" else None)
        config["trainer"]["accelerator"] = accelerator
        predict_ymls[name] = _write_yaml(output_dir / f"predict_{name}.yml", config)
    with _stage(3, f"Embedding the held-out experiment {HELD_OUT_EXPERIMENT}", timings):
        for name, path in predict_ymls.items():
            click.echo(f"    {_EMBEDDINGS[name]}: dynaclr predict -c {path}")
            _lightning("predict", "-c", str(path))

    annotations = study / HELD_OUT_EXPERIMENT / "annotations.csv"
    figure, curves_figure = output_dir / "embeddings.png", output_dir / "training_curves.png"
    probe_figure = output_dir / "probe_scores.png"
    with _stage(4, "Scoring infection state and track smoothness", timings):
        embeddings = {_EMBEDDINGS[name]: load_annotated_embeddings(path, annotations) for name, path in stores.items()}
        scores = {
            name: score_embeddings(adata, n_splits=settings.probe_splits, seed=seed)
            for name, adata in embeddings.items()
        }
        plot_embeddings({_EMBEDDINGS[key]: embeddings[_EMBEDDINGS[key]] for key in ("learned", "random")}, figure)
        plot_probe_scores({name: (score.probe_scores, score.infected) for name, score in scores.items()}, probe_figure)
        references = {
            f"{_EMBEDDINGS[key]}, all cells": metrics_of_embeddings(embeddings[_EMBEDDINGS[key]], seed=seed)
            for key in ("random", "learned")
        }
        curves = online_metrics(metrics_csv)
        plot_online_metrics(curves, references[f"{_EMBEDDINGS['random']}, all cells"], curves_figure)

    classifier_yml = _write_yaml(
        output_dir / "linear_classifier.yml",
        linear_classifier_config(stores["learned"], annotations, output_dir / "linear_classifiers"),
    )
    report = output_dir / "report.md"
    with _stage(5, "Writing the report", timings):
        table = results_table(scores)
        write_report(
            report,
            scores=scores,
            summary=_summary(settings, seed, checkpoint, epochs, batches_per_epoch),
            online_table=online_metrics_table(curves, references),
            settings={"demo": settings.name, "seed": seed, "accelerator": accelerator, **settings.as_dict()},
            files={
                "synthetic study (plates, tracks, annotations)": study,
                "experiments": experiments_yaml,
                "training config": fit_yml,
                "checkpoint": checkpoint,
                **{f"{_EMBEDDINGS[name]} embeddings (AnnData)": path for name, path in stores.items()},
                "figure": figure,
                "infection probe scores": probe_figure,
                "training curves": curves_figure,
            },
            commands={
                "train again": f"uv run dynaclr fit -c {fit_yml}",
                **{
                    f"embed with the {_EMBEDDINGS[name]}": f"uv run dynaclr predict -c {path}"
                    for name, path in predict_ymls.items()
                },
                "train the infection classifier": f"uv run dynaclr train-linear-classifier -c {classifier_yml}",
            },
            timings=timings,
        )
    click.echo(f"\nHeld-out experiment {HELD_OUT_EXPERIMENT}:\n{table}\n\nReport: {report}\nFigure: {figure}")
    return {"scores": scores, "table": table, "report": report, "timings": timings}


def _summary(settings: DemoSettings, seed: int, checkpoint: Path, epochs: int, batches_per_epoch: int) -> str:
    from dynaclr.example_experiments import EXAMPLE_EXPERIMENTS

    trained = [experiment["name"] for experiment in EXAMPLE_EXPERIMENTS if experiment["name"] != HELD_OUT_EXPERIMENT]
    return (
        f"A ContrastiveModule ({settings.backbone} encoder, NTXentHCL loss) trained for {epochs} epochs "
        f"of {batches_per_epoch} batches of {settings.batch_size} cells on the synthetic experiments "
        f"{' and '.join(trained)} (GFP reporter), with experiment-aware, condition-balanced, temporally enriched "
        f"batches and channel dropout of the reporter; checkpoint `{checkpoint.name}`. It then embedded every cell "
        f"of {HELD_OUT_EXPERIMENT}, an experiment it never trained on (RFP reporter, other frame interval). "
        "In infected cells the reporter relocalizes from cytoplasmic puncta to the nucleus without changing its "
        "intensities, so a cell's intensity statistics do not change with the infection; an encoder has to see "
        f"where the reporter is. Seed {seed}."
        + (
            " This was a `--quick` run: its training is too short for the scores to mean much."
            if settings is QUICK
            else ""
        )
    )


@click.command("demo", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--output-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("demo_output"),
    show_default=True,
    help="Where the study, configs, checkpoint, embeddings, figure and report go.",
)
@click.option("--overwrite", is_flag=True, help="Replace the demo's outputs in a non-empty --output-dir.")
@click.option("--quick", is_flag=True, help="A smaller study and a shorter training (under a minute on a CPU).")
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the study, the weights and the sampling.",
)
def main(output_dir: Path, overwrite: bool, quick: bool, seed: int) -> None:
    """Train DynaCLR on a synthetic study and evaluate it on a held-out experiment, end to end.

    Needs no data and no GPU (it uses one when present). Writes report.md and embeddings.png in
    --output-dir and prints the scores: a linear classifier of infection state and track smoothness,
    for the trained encoder, the untrained encoder and per-cell intensity statistics.
    """
    output_dir = output_dir.resolve()
    claim_output_dir(output_dir, overwrite)
    run_demo(output_dir, demo_settings(quick), seed)
