"""Config loading and error reporting shared by the linear-classifier commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar, get_args

import click
import pydantic
import yaml

from viscy_utils.cli_utils import load_config
from viscy_utils.evaluation.linear_classifier_config import LinearClassifierTrainConfig

__all__ = ["INPUT_CHANNELS", "TASKS", "config_option", "load_validated_config", "user_errors"]

TASKS: tuple[str, ...] = get_args(LinearClassifierTrainConfig.model_fields["task"].annotation)
"""Annotation columns a classifier can be trained for."""

INPUT_CHANNELS: tuple[str, ...] = get_args(LinearClassifierTrainConfig.model_fields["input_channel"].annotation)
"""Channels embeddings can be computed from."""

ConfigT = TypeVar("ConfigT", bound=pydantic.BaseModel)

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML config file.",
)
"""The ``-c/--config PATH`` option of the train and apply commands."""


def _describe(error: pydantic.ValidationError) -> str:
    """One line per problem, each naming the field (``<config>`` for whole-config checks)."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "<config>"
        lines.append(f"  {field}: {problem['msg']}")
    return "\n".join(lines)


def load_validated_config(path: Path, config_class: type[ConfigT]) -> ConfigT:
    """Read a YAML config and validate it, with a short message instead of a traceback.

    Relative paths in the config are read from the current directory.

    Parameters
    ----------
    path : Path
        The YAML file.
    config_class : type of pydantic.BaseModel
        E.g. :class:`~viscy_utils.evaluation.linear_classifier_config.LinearClassifierTrainConfig`.

    Returns
    -------
    pydantic.BaseModel
        The validated config.

    Raises
    ------
    click.ClickException
        If the file is not YAML or a field is invalid; the message names each bad field.
    """
    try:
        raw = load_config(path)
    except yaml.YAMLError as error:
        raise click.ClickException(f"{path} is not valid YAML: {error}") from error
    try:
        return config_class.model_validate(raw)
    except pydantic.ValidationError as error:
        raise click.ClickException(f"Invalid {config_class.__name__} in {path}:\n{_describe(error)}") from error


@contextmanager
def user_errors() -> Iterator[None]:
    """Report missing files, existing outputs and bad data as a short message, not a traceback.

    Raises
    ------
    click.ClickException
        For a :class:`FileExistsError`, :class:`FileNotFoundError`, :class:`KeyError` or
        :class:`ValueError` raised inside the block.
    """
    try:
        yield
    except (FileExistsError, FileNotFoundError, KeyError, ValueError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise click.ClickException(str(message)) from error
