"""``dynaclr train-linear-classifier``: train a logistic-regression classifier of an annotation on embeddings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import click

from dynaclr.evaluation.linear_classifiers._config import config_option, load_validated_config, user_errors
from viscy_utils.cli_utils import format_markdown_table
from viscy_utils.evaluation.linear_classifier_config import LinearClassifierTrainConfig

__all__ = ["format_metrics", "main"]


def _split(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    """Select the metrics of one split, with its prefix stripped."""
    return {key.removeprefix(prefix): value for key, value in metrics.items() if key.startswith(prefix)}


def format_metrics(metrics: Mapping[str, float]) -> str:
    """Render training metrics as markdown: a Training and a Validation table.

    Parameters
    ----------
    metrics : Mapping of str to float
        ``train_*`` and ``val_*`` metrics from
        :func:`~viscy_utils.evaluation.linear_classifier.train_linear_classifier`.

    Returns
    -------
    str
        ``## Classification Metrics``, then a ``### Training`` and a ``### Validation`` table
        with the ``train_``/``val_`` prefixes stripped from the metric names.
    """
    validation = _split(metrics, "val_")
    return "\n".join(
        [
            "## Classification Metrics",
            "",
            "### Training",
            "",
            format_markdown_table(_split(metrics, "train_")),
            "### Validation",
            "",
            format_markdown_table(validation) if validation else "No validation split (split_train_data: 1.0).\n",
        ]
    )


@click.command(name="train-linear-classifier")
@config_option
def main(config_path: Path) -> None:
    """Train a linear classifier on cell embeddings, as the config says.

    The config holds the fields of LinearClassifierTrainConfig: the task (annotation column),
    the training datasets (embeddings zarr + annotations CSV), preprocessing and classifier
    settings, and where to keep the pipeline (output_dir and/or wandb_project).
    """
    from viscy_utils.evaluation.linear_classifier import classifier_model_name, train_from_config

    config = load_validated_config(config_path, LinearClassifierTrainConfig)
    name = classifier_model_name(config.model_dump())
    click.echo(
        f"Training {name} on {len(config.train_datasets)} dataset(s): loading embeddings and annotations, "
        f"fitting {config.solver} logistic regression..."
    )
    with user_errors():
        _, metrics = train_from_config(config)
    click.echo(format_metrics(metrics))
    if config.output_dir is not None:
        click.echo(f"Saved pipeline {name!r} to {config.output_dir}")
    if config.wandb_project is not None:
        click.echo(f"Logged pipeline {name!r} to W&B project {config.wandb_project!r}")
