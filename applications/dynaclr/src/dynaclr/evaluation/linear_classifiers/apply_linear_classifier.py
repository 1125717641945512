"""``dynaclr apply-linear-classifier``: predict an annotation for every cell of an embedding store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dynaclr.evaluation.linear_classifiers._config import config_option, load_validated_config, user_errors
from viscy_utils.cli_utils import format_markdown_table
from viscy_utils.evaluation.linear_classifier_config import LinearClassifierInferenceConfig

__all__ = ["format_summary", "main", "pipeline_source", "predicted_tasks"]

_NOT_PREDICTED = "<not predicted: other wells>"


def pipeline_source(config: LinearClassifierInferenceConfig) -> str:
    """Where the pipeline comes from: its local directory (and name) or its W&B artifact.

    Parameters
    ----------
    config : LinearClassifierInferenceConfig
        The inference config.

    Returns
    -------
    str
        E.g. ``"linear_classifiers (linear-classifier-infection_state-phase)"`` or
        ``"W&B entity/project/model:latest"``.
    """
    if config.pipeline_dir is not None:
        return f"{config.pipeline_dir}" + (f" ({config.model_name})" if config.model_name else "")
    entity = f"{config.wandb_entity}/" if config.wandb_entity else ""
    return f"W&B {entity}{config.wandb_project}/{config.model_name}:{config.version}"


def predicted_tasks(adata: Any) -> list[str]:
    """Tasks predicted in a store: ``obs["predicted_{task}"]`` with ``uns["predicted_{task}_classes"]``.

    Parameters
    ----------
    adata : AnnData
        Annotated embeddings.

    Returns
    -------
    list of str
        The task names, in ``obs`` column order.
    """
    columns = [str(column) for column in adata.obs.columns]
    return [
        column.removeprefix("predicted_")
        for column in columns
        if column.startswith("predicted_") and f"{column}_classes" in adata.uns
    ]


def format_summary(adata: Any, source: str, embeddings_path: Path, written_to: Path) -> str:
    """Render the predictions of an annotated store as markdown.

    Parameters
    ----------
    adata : AnnData
        The annotated embeddings.
    source : str
        Where the pipeline came from, see :func:`pipeline_source`.
    embeddings_path : Path
        The store that was read.
    written_to : Path
        The store that was written.

    Returns
    -------
    str
        Per predicted task: the class counts of ``obs["predicted_{task}"]``, the shape and
        classes of ``obsm["predicted_{task}_proba"]``; then the provenance.
    """
    sections = ["## Linear Classifier Predictions", ""]
    for task in predicted_tasks(adata):
        column = f"predicted_{task}"
        labels = adata.obs[column].astype(object)
        counts = labels.where(labels.notna(), _NOT_PREDICTED).value_counts()
        proba = adata.obsm[f"{column}_proba"]
        sections += [
            f"### Class counts of `{column}`",
            "",
            format_markdown_table([{"class": label, "cells": int(count)} for label, count in counts.items()]),
            f"### Probabilities `{column}_proba`",
            "",
            format_markdown_table(
                {"shape": str(tuple(proba.shape)), "classes": ", ".join(map(str, adata.uns[f"{column}_classes"]))},
                headers=["Field", "Value"],
            ),
        ]
    provenance = {"pipeline": source, "embeddings": str(embeddings_path), "written to": str(written_to)}
    sections += ["### Provenance", "", format_markdown_table(provenance, headers=["Field", "Value"])]
    return "\n".join(sections)


@click.command(name="apply-linear-classifier")
@config_option
def main(config_path: Path) -> None:
    """Apply a trained linear classifier to an embedding store, as the config says.

    The config holds the fields of LinearClassifierInferenceConfig: the pipeline source
    (pipeline_dir, or wandb_project + model_name), embeddings_path, output_path (a new store;
    writing into embeddings_path itself needs overwrite: true) and include_wells.
    """
    from viscy_utils.evaluation.linear_classifier import predict_from_config

    config = load_validated_config(config_path, LinearClassifierInferenceConfig)
    written_to = config.output_path or config.embeddings_path
    source = pipeline_source(config)
    click.echo(f"Predicting {config.embeddings_path} with the pipeline from {source}, writing {written_to}...")
    with user_errors():
        adata = predict_from_config(config)
    click.echo(format_summary(adata, source, config.embeddings_path, written_to))
