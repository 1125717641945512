"""``dynaclr discover-datasets``: pair embedding stores with their annotations in a dataset registry.

Matching rule. Every AnnData zarr store under the predictions root (as written by
:class:`viscy_utils.callbacks.EmbeddingWriter`) belongs to a *dataset*: the first folder
below the root (``<predictions_root>/<dataset>/.../<store>.zarr``), or the store's own stem
when it lies in the root itself (``<predictions_root>/<dataset>.zarr``). The dataset's
annotations are ``<annotations_root>/<dataset>.csv`` or the CSV in
``<annotations_root>/<dataset>/``; exactly one such CSV must exist. The store's input
channel (``phase``, ``sensor`` or ``organelle``) is read from its file name when exactly one
of them appears in it (``embeddings_phase.zarr``).

The registry is a YAML list of ``{name, embeddings, annotations[, input_channel]}`` with
absolute paths: usable as ``train_datasets`` of a linear-classifier config, and the input
of ``dynaclr generate-train-config``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import yaml

from dynaclr.evaluation._output import refuse_existing, write_files
from dynaclr.evaluation.linear_classifiers._config import INPUT_CHANNELS, TASKS
from viscy_utils.cli_utils import format_markdown_table

__all__ = [
    "Discovery",
    "annotation_classes",
    "dataset_name",
    "discover_datasets",
    "find_annotations",
    "find_embedding_stores",
    "infer_input_channel",
    "is_anndata_store",
    "load_registry",
    "main",
    "registry_yaml",
]

_IGNORED_LABELS = ("unknown",)
"""Labels that training drops (as :func:`~viscy_utils.evaluation.linear_classifier.load_and_combine_datasets` does)."""


def is_anndata_store(path: Path) -> bool:
    """Whether a directory is an AnnData zarr store (zarr format 2 or 3).

    Parameters
    ----------
    path : Path
        A directory.

    Returns
    -------
    bool
        True when its root attributes say ``encoding-type: anndata``.
    """
    if (path / ".zattrs").is_file():
        attributes = json.loads((path / ".zattrs").read_text())
    elif (path / "zarr.json").is_file():
        attributes = json.loads((path / "zarr.json").read_text()).get("attributes", {})
    else:
        return False
    return attributes.get("encoding-type") == "anndata"


def find_embedding_stores(predictions_root: Path) -> tuple[list[Path], list[Path]]:
    """Find the AnnData zarr stores under a directory, without descending into any zarr store.

    Parameters
    ----------
    predictions_root : Path
        Root of the predictions.

    Returns
    -------
    tuple of two lists of Path
        The AnnData stores and the other ``*.zarr`` directories (e.g. OME-Zarr plates), sorted.
    """
    stores, others = [], []
    for directory, subdirectories, _ in os.walk(predictions_root):
        zarrs = [name for name in subdirectories if name.endswith(".zarr")]
        for name in zarrs:
            (stores if is_anndata_store(Path(directory) / name) else others).append(Path(directory) / name)
        subdirectories[:] = [name for name in subdirectories if name not in zarrs and not name.startswith(".")]
    return sorted(stores), sorted(others)


def dataset_name(store: Path, predictions_root: Path) -> str:
    """Name the dataset of a store: its first folder below the root, or its stem in the root."""
    parts = store.relative_to(predictions_root).parts
    return parts[0] if len(parts) > 1 else store.stem


def find_annotations(annotations_root: Path, dataset: str) -> list[Path]:
    """List the annotation CSVs of a dataset: ``<root>/<dataset>.csv`` and ``<root>/<dataset>/*.csv``."""
    candidates = [annotations_root / f"{dataset}.csv", *sorted((annotations_root / dataset).glob("*.csv"))]
    return [path for path in candidates if path.is_file()]


def infer_input_channel(store: Path) -> str | None:
    """Read the input channel from a store's file name; None when none or several are named."""
    found = [channel for channel in INPUT_CHANNELS if channel in store.stem.lower()]
    return found[0] if len(found) == 1 else None


def annotation_classes(csv_path: Path) -> dict[str, list[str]]:
    """Read the labelled classes of each task column of an annotations CSV.

    Parameters
    ----------
    csv_path : Path
        Annotations CSV.

    Returns
    -------
    dict of str to list of str
        For each task column present (see :data:`TASKS`), its sorted distinct labels, without
        NaN and ``"unknown"`` (which training drops).
    """
    import pandas as pd

    table = pd.read_csv(csv_path, usecols=lambda column: column in TASKS)
    classes = {}
    for task in (task for task in TASKS if task in table.columns):
        labels = table[task].dropna().astype(str)
        classes[task] = sorted(set(labels) - set(_IGNORED_LABELS))
    return classes


@dataclass
class Discovery:
    """What :func:`discover_datasets` found.

    Attributes
    ----------
    registry : list of dict
        Stores with annotations: ``{name, embeddings, annotations[, input_channel]}``.
    unmatched : list of dict
        Stores without (unique) annotations: ``{name, embeddings, reason}``.
    annotations_only : list of str
        Annotated datasets without any embedding store.
    other_zarrs : list of Path
        Zarr stores that are not AnnData embeddings (skipped).
    """

    registry: list[dict[str, str]] = field(default_factory=list)
    unmatched: list[dict[str, str]] = field(default_factory=list)
    annotations_only: list[str] = field(default_factory=list)
    other_zarrs: list[Path] = field(default_factory=list)


def discover_datasets(predictions_root: Path, annotations_root: Path) -> Discovery:
    """Find the embedding stores and pair each with its dataset's annotations (see the module rule).

    Parameters
    ----------
    predictions_root : Path
        Root of the AnnData embedding stores.
    annotations_root : Path
        Root of the annotation CSVs.

    Returns
    -------
    Discovery
        The registry and what could not be matched.
    """
    predictions_root, annotations_root = predictions_root.resolve(), annotations_root.resolve()
    stores, others = find_embedding_stores(predictions_root)
    discovery = Discovery(other_zarrs=others)
    datasets = set()
    for store in stores:
        dataset = dataset_name(store, predictions_root)
        datasets.add(dataset)
        name = store.relative_to(predictions_root).with_suffix("").as_posix()
        annotations = find_annotations(annotations_root, dataset)
        if len(annotations) != 1:
            reason = (
                f"no {dataset}.csv or {dataset}/*.csv"
                if not annotations
                else "several annotation CSVs: " + ", ".join(path.name for path in annotations)
            )
            discovery.unmatched.append({"name": name, "embeddings": str(store), "reason": reason})
            continue
        entry = {"name": name, "embeddings": str(store), "annotations": str(annotations[0])}
        channel = infer_input_channel(store)
        if channel is not None:
            entry["input_channel"] = channel
        discovery.registry.append(entry)
    annotated = {path.stem for path in annotations_root.glob("*.csv")} | {
        path.name for path in annotations_root.iterdir() if path.is_dir() and any(path.glob("*.csv"))
    }
    discovery.annotations_only = sorted(annotated - datasets)
    return discovery


def registry_yaml(registry: Sequence[Mapping[str, str]], predictions_root: Path, annotations_root: Path) -> str:
    """Render the registry as YAML, with a header saying where it came from."""
    header = (
        f"# Dataset registry written by `dynaclr discover-datasets`\n"
        f"#   predictions: {predictions_root.resolve()}\n#   annotations: {annotations_root.resolve()}\n"
        "# Usable as `train_datasets` of a linear-classifier config, and by `dynaclr generate-train-config`.\n"
    )
    return header + yaml.safe_dump([dict(entry) for entry in registry], sort_keys=False)


def load_registry(path: Path) -> list[dict[str, Any]]:
    """Read a dataset registry written by ``dynaclr discover-datasets``.

    Parameters
    ----------
    path : Path
        The registry YAML.

    Returns
    -------
    list of dict
        Its entries, each with ``embeddings`` and ``annotations``.

    Raises
    ------
    click.ClickException
        If the file is not a list of mappings with ``embeddings`` and ``annotations``.
    """
    entries = yaml.safe_load(path.read_text())
    if not isinstance(entries, list) or not entries:
        raise click.ClickException(f"{path} is not a dataset registry: expected a non-empty YAML list of datasets.")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"embeddings", "annotations"} <= set(entry):
            raise click.ClickException(f"{path}: entry {i} needs 'embeddings' and 'annotations' keys; got {entry!r}.")
    return entries


def _report(discovery: Discovery) -> str:
    """Render the discovery as markdown tables."""
    rows = []
    for entry in discovery.registry:
        classes = annotation_classes(Path(entry["annotations"]))
        rows.append(
            {
                "name": entry["name"],
                "channel": entry.get("input_channel", "?"),
                "annotations": Path(entry["annotations"]).name,
                "tasks": ", ".join(f"{task} ({len(labels)})" for task, labels in classes.items()) or "none",
            }
        )
    sections = ["## Embedding stores with annotations", "", format_markdown_table(rows) if rows else "None.\n"]
    if discovery.unmatched:
        unmatched = [{"name": entry["name"], "reason": entry["reason"]} for entry in discovery.unmatched]
        sections += ["## Embedding stores without annotations", "", format_markdown_table(unmatched)]
    if discovery.annotations_only:
        sections += ["## Annotations without embeddings", "", *(f"- {name}" for name in discovery.annotations_only)]
    if discovery.other_zarrs:
        sections.append(f"\nSkipped {len(discovery.other_zarrs)} zarr store(s) that are not AnnData embeddings.")
    return "\n".join(sections)


@click.command(name="discover-datasets")
@click.option(
    "--predictions-root",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Root of the AnnData embedding stores (<root>/<dataset>/.../*.zarr).",
)
@click.option(
    "--annotations-root",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Root of the annotations (<root>/<dataset>/*.csv or <root>/<dataset>.csv).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Registry YAML to write.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing registry.")
def main(predictions_root: Path, annotations_root: Path, output: Path, overwrite: bool) -> None:
    """Find embedding stores and their annotations, and write a dataset registry YAML.

    A store belongs to the dataset named by its first folder below the predictions root (or
    by its stem when it lies in the root); that dataset's annotations are
    <annotations-root>/<dataset>.csv or the one CSV in <annotations-root>/<dataset>/.
    """
    refuse_existing([output], overwrite)
    click.echo(f"Searching {predictions_root} for AnnData embedding stores...")
    discovery = discover_datasets(predictions_root, annotations_root)
    click.echo(_report(discovery))
    if not discovery.registry:
        raise click.ClickException(
            f"No embedding store under {predictions_root} has annotations in {annotations_root}; nothing written."
        )
    write_files({output: registry_yaml(discovery.registry, predictions_root, annotations_root)}, overwrite)
    click.echo(f"Wrote {len(discovery.registry)} dataset(s) to {output}")
