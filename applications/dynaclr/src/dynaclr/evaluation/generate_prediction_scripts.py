"""``dynaclr generate-prediction-scripts``: predict configs and SLURM scripts for a trained checkpoint.

For each channel set ``NAME=CHANNEL[,CHANNEL...]`` the command writes, into the output
directory, ``predict_<NAME>.yml`` (a LightningCLI predict config: the template's model, data
and trainer with this plate, these channels, the checkpoint and an EmbeddingWriter writing
``embeddings_<NAME>.zarr``) and ``predict_<NAME>.sh`` (an sbatch script running
``dynaclr predict`` on one GPU). The channels replace the template's ``source_channel`` by
position, and so do the ``keys`` of its normalizations and augmentations. It imports neither
torch nor Lightning.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import click
import yaml

from dynaclr.evaluation._output import refuse_existing, write_files

__all__ = [
    "DEFAULT_TEMPLATE",
    "ChannelSet",
    "SlurmOptions",
    "main",
    "parse_channel_set",
    "predict_config",
    "slurm_script",
]

DEFAULT_TEMPLATE = Path(str(files("dynaclr.evaluation") / "templates" / "predict.yml"))
"""The template shipped with dynaclr: a 2-channel ConvNeXt-tiny ContrastiveEncoder on 30 Z slices."""

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_TRANSFORM_LISTS = ("normalizations", "augmentations")


@dataclass(frozen=True)
class ChannelSet:
    """The plate channels one prediction run reads.

    Attributes
    ----------
    name : str
        Names the files (``predict_<name>.yml``) and the store (``embeddings_<name>.zarr``).
    channels : tuple of str
        Plate channel names, in the model's input order.
    """

    name: str
    channels: tuple[str, ...]


@dataclass(frozen=True)
class SlurmOptions:
    """Resources and environment of the sbatch scripts.

    Attributes
    ----------
    partition : str
        SLURM partition.
    time : str
        Wall-time limit, e.g. ``"01:00:00"``.
    cpus_per_task : int
        CPU cores of the job.
    project : Path
        uv project that has dynaclr installed (``uv run --project``).
    """

    partition: str
    time: str
    cpus_per_task: int
    project: Path


def parse_channel_set(value: str) -> ChannelSet:
    """Parse ``NAME=CHANNEL[,CHANNEL...]``, e.g. ``"phase=Phase3D"`` or ``"sensor=Phase3D,GFP"``.

    Parameters
    ----------
    value : str
        The option value.

    Returns
    -------
    ChannelSet
        The parsed set.

    Raises
    ------
    ValueError
        If the name is missing or not a plain file-name word, or no channel is given.
    """
    name, separator, channels = value.partition("=")
    parsed = tuple(channel.strip() for channel in channels.split(",") if channel.strip())
    if not separator or not _NAME.match(name.strip()) or not parsed:
        raise ValueError(
            f"{value!r} is not NAME=CHANNEL[,CHANNEL...] (NAME of letters, digits, '_', '-' or '.'), "
            "e.g. phase=Phase3D or sensor=Phase3D,GFP."
        )
    return ChannelSet(name.strip(), parsed)


class _ChannelSetType(click.ParamType):
    """Click type of ``--channel NAME=CHANNEL[,CHANNEL...]``."""

    name = "NAME=CHANNEL[,CHANNEL...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> ChannelSet:
        if isinstance(value, ChannelSet):
            return value
        try:
            return parse_channel_set(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


def _section(config: dict[str, Any], *keys: str) -> dict[str, Any]:
    """``config[k0][k1]...``, naming the missing key when the template lacks it."""
    node = config
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or not isinstance(node.get(key), dict):
            raise click.ClickException(f"The template has no {'.'.join(keys[: depth + 1])} mapping.")
        node = node[key]
    return node


def _embedding_writer(config: dict[str, Any]) -> dict[str, Any]:
    """Return the ``init_args`` of the template's one EmbeddingWriter callback."""
    callbacks = _section(config, "trainer").get("callbacks") or []
    writers = [
        callback
        for callback in callbacks
        if isinstance(callback, dict) and str(callback.get("class_path", "")).rsplit(".", 1)[-1] == "EmbeddingWriter"
    ]
    if len(writers) != 1:
        raise click.ClickException(
            f"The template needs exactly one EmbeddingWriter in trainer.callbacks; it has {len(writers)}."
        )
    return writers[0].setdefault("init_args", {})


def _rename_keys(transforms: list[dict[str, Any]], renames: dict[str, str], where: str) -> None:
    """Replace channel names in each transform's ``keys``, by their position in ``source_channel``."""
    for i, transform in enumerate(transforms):
        init_args = transform.get("init_args", {})
        keys = init_args.get("keys")
        if keys is None:
            continue
        names = [keys] if isinstance(keys, str) else list(keys)
        unknown = [name for name in names if name not in renames]
        if unknown:
            raise click.ClickException(
                f"{where}[{i}] ({transform.get('class_path')}) has keys {unknown} that are not in the "
                f"template's source_channel {list(renames)}."
            )
        init_args["keys"] = [renames[name] for name in names]


def predict_config(
    template: dict[str, Any],
    channel_set: ChannelSet,
    ckpt_path: Path,
    data_path: Path,
    tracks_path: Path,
    output_path: Path,
) -> dict[str, Any]:
    """Fill in the template for one channel set (the template itself is not changed).

    Parameters
    ----------
    template : dict
        A LightningCLI predict config with ``data.init_args.source_channel`` and an
        ``EmbeddingWriter`` in ``trainer.callbacks``.
    channel_set : ChannelSet
        Channels to read, as many as the template's ``source_channel``.
    ckpt_path : Path
        Checkpoint to predict with.
    data_path, tracks_path : Path
        HCS OME-Zarr plate and the root of its tracks CSVs.
    output_path : Path
        Embedding store the EmbeddingWriter writes.

    Returns
    -------
    dict
        The config.

    Raises
    ------
    click.ClickException
        If the template lacks a section, the channel counts differ or a transform key is not
        a template channel.
    """
    config = copy.deepcopy(template)
    data = _section(config, "data", "init_args")
    source = data.get("source_channel")
    template_channels = [source] if isinstance(source, str) else list(source or [])
    if len(template_channels) != len(channel_set.channels):
        raise click.ClickException(
            f"Channel set {channel_set.name!r} lists {len(channel_set.channels)} channel(s) "
            f"{list(channel_set.channels)}, but the template's model reads {len(template_channels)} "
            f"(source_channel: {template_channels}). Give {len(template_channels)} channel(s) "
            "or a --template whose model takes this many."
        )
    renames = dict(zip(template_channels, channel_set.channels, strict=True))
    for key in _TRANSFORM_LISTS:
        _rename_keys(data.get(key) or [], renames, f"data.init_args.{key}")
    data.update(data_path=str(data_path), tracks_path=str(tracks_path), source_channel=list(channel_set.channels))
    _embedding_writer(config)["output_path"] = str(output_path)
    config["ckpt_path"] = str(ckpt_path)
    return config


def slurm_script(config_path: Path, channel_set: ChannelSet, options: SlurmOptions) -> str:
    """Write an sbatch script that runs ``dynaclr predict -c <config>`` on one GPU.

    Parameters
    ----------
    config_path : Path
        Absolute path of the predict config; the job runs in its directory.
    channel_set : ChannelSet
        The channel set (names the job).
    options : SlurmOptions
        Partition, time, CPUs and uv project.

    Returns
    -------
    str
        The script.
    """
    directory = config_path.parent
    return "\n".join(
        [
            "#!/bin/bash",
            f"#SBATCH --job-name=dynaclr-predict-{channel_set.name}",
            "#SBATCH --nodes=1",
            "#SBATCH --ntasks=1",
            "#SBATCH --gres=gpu:1",
            f"#SBATCH --partition={options.partition}",
            f"#SBATCH --cpus-per-task={options.cpus_per_task}",
            f"#SBATCH --time={options.time}",
            f"#SBATCH --output={directory}/slurm-%x-%j.out",
            "",
            "# Written by `dynaclr generate-prediction-scripts`: embeddings of channel set "
            f"{channel_set.name!r} ({', '.join(channel_set.channels)}).",
            "set -euo pipefail",
            f"cd {shlex.quote(str(directory))}",
            f"srun uv run --project {shlex.quote(str(options.project))} dynaclr predict -c {config_path.name}",
            "",
        ]
    )


def _config_text(config: dict[str, Any], template_path: Path, script_name: str) -> str:
    """Render the config as YAML, with a header saying where it came from and how to run it."""
    header = (
        f"# Written by `dynaclr generate-prediction-scripts` from the template {template_path}\n"
        f"# Run with: sbatch {script_name}   (or: dynaclr predict -c <this file>)\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False)


def _load_template(path: Path) -> dict[str, Any]:
    """Read a template, refusing anything but a YAML mapping."""
    try:
        template = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise click.ClickException(f"Template {path} is not valid YAML: {error}") from error
    if not isinstance(template, dict):
        raise click.ClickException(f"Template {path} is not a LightningCLI config (a YAML mapping).")
    return template


@click.command(name="generate-prediction-scripts")
@click.option(
    "--ckpt-path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, resolve_path=True, path_type=Path),
    help="Checkpoint of the trained model.",
)
@click.option(
    "--data-path",
    required=True,
    type=click.Path(exists=True, resolve_path=True, path_type=Path),
    help="HCS OME-Zarr plate to embed.",
)
@click.option(
    "--tracks-path",
    required=True,
    type=click.Path(exists=True, file_okay=False, resolve_path=True, path_type=Path),
    help="Root of the plate's tracks CSVs.",
)
@click.option(
    "-o",
    "--output-dir",
    required=True,
    type=click.Path(file_okay=False, resolve_path=True, path_type=Path),
    help="Directory for the configs, scripts, SLURM logs and embedding stores.",
)
@click.option(
    "--channel",
    "channel_sets",
    required=True,
    multiple=True,
    type=_ChannelSetType(),
    help="A channel set NAME=CHANNEL[,CHANNEL...]; repeat for several, e.g. --channel phase=Phase3D.",
)
@click.option(
    "--template",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=DEFAULT_TEMPLATE,
    show_default="the template shipped with dynaclr",
    help="LightningCLI predict config with the model and data settings of the checkpoint.",
)
@click.option("--partition", default="gpu", show_default=True, help="SLURM partition.")
@click.option("--time", "time_limit", default="01:00:00", show_default=True, help="SLURM time limit.")
@click.option("--cpus-per-task", default=16, show_default=True, type=click.IntRange(min=1), help="SLURM CPUs.")
@click.option(
    "--project",
    type=click.Path(exists=True, file_okay=False, resolve_path=True, path_type=Path),
    default=".",
    show_default="the current directory",
    help="uv project with dynaclr installed, run by `uv run --project`.",
)
@click.option("--overwrite", is_flag=True, help="Replace existing configs and scripts.")
def main(
    ckpt_path: Path,
    data_path: Path,
    tracks_path: Path,
    output_dir: Path,
    channel_sets: Sequence[ChannelSet],
    template: Path,
    partition: str,
    time_limit: str,
    cpus_per_task: int,
    project: Path,
    overwrite: bool,
) -> None:
    """Write predict_<NAME>.yml and predict_<NAME>.sh (sbatch, 1 GPU) for each channel set.

    Model and data settings come from the template; the channels of each set replace the
    template's source_channel by position.
    """
    names = [channel_set.name for channel_set in channel_sets]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise click.ClickException(f"Channel set names must be unique; repeated: {duplicates}.")
    refuse_existing([output_dir / f"predict_{name}.{suffix}" for name in names for suffix in ("yml", "sh")], overwrite)
    options = SlurmOptions(partition, time_limit, cpus_per_task, project)
    template_config = _load_template(template)
    contents, scripts = {}, []
    for channel_set in channel_sets:
        config_path = output_dir / f"predict_{channel_set.name}.yml"
        script_path = config_path.with_suffix(".sh")
        store = output_dir / f"embeddings_{channel_set.name}.zarr"
        config = predict_config(template_config, channel_set, ckpt_path, data_path, tracks_path, store)
        contents[config_path] = _config_text(config, template, script_path.name)
        contents[script_path] = slurm_script(config_path, channel_set, options)
        scripts.append(script_path)
        click.echo(f"{channel_set.name}: {', '.join(channel_set.channels)} -> {store}")
    write_files(contents, overwrite, executable=scripts)
    for script in scripts:
        click.echo(f"Wrote {script.with_suffix('.yml')} and {script}; submit with: sbatch {script}")
