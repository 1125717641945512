"""``dynaclr generate-train-config``: one linear-classifier training config per task and input channel.

From a dataset registry (written by ``dynaclr discover-datasets``), the datasets of a
``(task, input_channel)`` combination are the registry entries of that channel whose
annotations label that task. A combination is valid, and gets a config
``<output_dir>/<task>_<input_channel>.yml``, when at least one of its datasets labels two or
more classes. Every written config is a validated
:class:`~viscy_utils.evaluation.linear_classifier_config.LinearClassifierTrainConfig`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pydantic
import yaml

from dynaclr.evaluation._output import write_files
from dynaclr.evaluation.linear_classifiers._config import INPUT_CHANNELS, TASKS
from dynaclr.evaluation.linear_classifiers.dataset_discovery import annotation_classes, load_registry
from viscy_utils.cli_utils import format_markdown_table
from viscy_utils.evaluation.linear_classifier_config import LinearClassifierTrainConfig

__all__ = ["TrainConfigPlan", "main", "plan_train_configs"]

_DATASET_KEYS = ("name", "embeddings", "annotations", "include_wells")
"""Registry keys copied into ``train_datasets``."""


@dataclass(frozen=True)
class TrainConfigPlan:
    """The datasets of one ``(task, input_channel)`` combination.

    Attributes
    ----------
    task : str
        Annotation column.
    input_channel : str
        Channel of the embeddings.
    datasets : list of dict
        ``train_datasets`` entries.
    classes : list of str
        Labels of the task across the datasets.
    valid : bool
        Whether some dataset labels at least two classes.
    """

    task: str
    input_channel: str
    datasets: list[dict[str, Any]]
    classes: list[str]
    valid: bool

    @property
    def filename(self) -> str:
        """``<task>_<input_channel>.yml``."""
        return f"{self.task}_{self.input_channel}.yml"


def plan_train_configs(registry: Sequence[Mapping[str, Any]]) -> tuple[list[TrainConfigPlan], list[str]]:
    """Group registry entries by ``(task, input_channel)``.

    Parameters
    ----------
    registry : sequence of Mapping
        Registry entries with ``embeddings``, ``annotations`` and ``input_channel``.

    Returns
    -------
    tuple
        The combinations that have at least one labelled dataset (valid or not), and the
        names of the entries without an ``input_channel``.
    """
    classes = {i: annotation_classes(Path(entry["annotations"])) for i, entry in enumerate(registry)}
    no_channel = [str(entry.get("name", entry["embeddings"])) for entry in registry if not entry.get("input_channel")]
    plans = []
    for task in TASKS:
        for channel in INPUT_CHANNELS:
            members = [
                i for i, entry in enumerate(registry) if entry.get("input_channel") == channel and classes[i].get(task)
            ]
            if not members:
                continue
            plans.append(
                TrainConfigPlan(
                    task=task,
                    input_channel=channel,
                    datasets=[{key: registry[i][key] for key in _DATASET_KEYS if key in registry[i]} for i in members],
                    classes=sorted({label for i in members for label in classes[i][task]}),
                    valid=any(len(classes[i][task]) >= 2 for i in members),
                )
            )
    return plans, no_channel


def _train_config(plan: TrainConfigPlan, settings: Mapping[str, Any]) -> LinearClassifierTrainConfig:
    """Validate the config of a plan; a stale registry path is reported, not a traceback."""
    try:
        return LinearClassifierTrainConfig(
            task=plan.task, input_channel=plan.input_channel, train_datasets=plan.datasets, **settings
        )
    except pydantic.ValidationError as error:
        problems = "; ".join(problem["msg"] for problem in error.errors())
        raise click.ClickException(f"Cannot write {plan.filename}: {problems}") from error


def _config_text(config: LinearClassifierTrainConfig, plan: TrainConfigPlan, registry: Path) -> str:
    """Render the config as YAML, with a header saying where it came from and how to run it."""
    header = (
        f"# Written by `dynaclr generate-train-config` from {registry.resolve()}\n"
        f"# Train with: dynaclr train-linear-classifier -c {plan.filename}\n"
    )
    return header + yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


@click.command(name="generate-train-config")
@click.option(
    "-r",
    "--registry",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Dataset registry YAML written by `dynaclr discover-datasets`.",
)
@click.option(
    "-o",
    "--output-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write <task>_<input_channel>.yml configs into.",
)
@click.option("--embedding-model", required=True, help="Name of the model that computed the embeddings.")
@click.option(
    "--pipeline-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where training saves the pipelines (output_dir of the configs). Default: <output-dir>/pipelines.",
)
@click.option("--wandb-project", default=None, help="Also log the pipelines to this W&B project.")
@click.option("--overwrite", is_flag=True, help="Replace existing configs.")
def main(
    registry: Path,
    output_dir: Path,
    embedding_model: str,
    pipeline_dir: Path | None,
    wandb_project: str | None,
    overwrite: bool,
) -> None:
    """Write one linear-classifier training config per valid task and input channel.

    A (task, input_channel) combination is valid when a registry dataset of that channel has
    annotations of that task with at least two classes.
    """
    entries = load_registry(registry)
    click.echo(f"Reading the annotations of {len(entries)} dataset(s) from {registry}...")
    plans, no_channel = plan_train_configs(entries)
    settings = {
        "embedding_model": embedding_model,
        "output_dir": (pipeline_dir or output_dir / "pipelines").resolve(),
        "wandb_project": wandb_project,
    }
    valid = [plan for plan in plans if plan.valid]
    rows = [
        {
            "task": plan.task,
            "channel": plan.input_channel,
            "datasets": len(plan.datasets),
            "classes": ", ".join(plan.classes),
            "config": plan.filename if plan.valid else "skipped: fewer than 2 classes in every dataset",
        }
        for plan in plans
    ]
    click.echo(format_markdown_table(rows, title="Training configs") if rows else "No labelled task found.")
    if no_channel:
        click.echo(
            f"Skipped {len(no_channel)} dataset(s) without input_channel in the registry "
            f"(add input_channel: {'|'.join(INPUT_CHANNELS)}): {', '.join(no_channel)}"
        )
    if not valid:
        raise click.ClickException(f"No valid (task, input_channel) combination in {registry}; nothing written.")
    contents = {
        output_dir / plan.filename: _config_text(_train_config(plan, settings), plan, registry) for plan in valid
    }
    write_files(contents, overwrite)
    for path in contents:
        click.echo(f"Wrote {path}")
