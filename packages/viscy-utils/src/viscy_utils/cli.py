"""The ``viscy`` command line: Lightning's ``fit``/``validate``/``test``/``predict`` plus VisCy's own commands.

Usage::

    viscy fit -c fit.yml
    viscy predict -c predict.yml
    viscy export -c export_onnx.yml
    viscy preprocess --data_path plate.zarr
    viscy rechunk --data_path plate.zarr --output_path plate_128.zarr

This module imports neither torch nor Lightning: ``viscy --help`` answers from
:data:`SUBCOMMAND_HELP`, and :class:`VisCyCLI` (in :mod:`viscy_utils.lightning_cli`) is
imported when a subcommand runs. A command line built on this one (``dynaclr``) runs a
Lightning subcommand with :func:`main`, which reports configuration and input errors in one
line, or with :func:`run_cli`, which raises them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from viscy_utils.lightning_cli import VisCyCLI

__all__ = [
    "DESCRIPTION",
    "LOG_LEVEL_ENV",
    "SUBCOMMAND_HELP",
    "ArgumentsError",
    "ConfigError",
    "VisCyCLI",
    "main",
    "run_cli",
]

LOG_LEVEL_ENV = "VISCY_LOG_LEVEL"
"""Environment variable with the log level of the ``viscy`` command (default ``INFO``; ``DEBUG`` shows tracebacks)."""

DESCRIPTION = "Computer vision models for single-cell phenotyping."
"""What ``viscy --help`` says the command is."""

VISCY_SUBCOMMANDS = ("preprocess", "export", "precompute", "rechunk", "convert_to_anndata")
"""Commands that :class:`~viscy_utils.trainer.VisCyTrainer` adds to Lightning's."""

SUBCOMMAND_HELP: dict[str, str] = {
    "fit": "Train a model (Lightning's fit loop, validating as configured).",
    "validate": "Run one evaluation epoch over the validation set.",
    "test": "Run one evaluation epoch over the test set.",
    "predict": "Run inference, e.g. write cell embeddings with the EmbeddingWriter callback.",
    "preprocess": "Write normalization statistics into an HCS OME-Zarr plate.",
    "export": "Export a model's checkpoint to ONNX.",
    "precompute": "Save normalized float16 image stacks of selected channels.",
    "rechunk": "Write a training copy of an HCS plate with chunks sized for patch reads.",
    "convert_to_anndata": "Convert legacy xarray embeddings to an AnnData zarr store.",
}
"""Every subcommand, in the order of ``viscy --help``, with its one-line description."""

_MODEL_FREE_SUBCOMMANDS = frozenset({"preprocess", "precompute", "rechunk", "convert_to_anndata"})
_DATA_FREE_SUBCOMMANDS = frozenset({"preprocess", "precompute", "rechunk", "export", "convert_to_anndata"})
_CONFIG_OPTIONS = frozenset({"-c", "--config"})
"""The options before the subcommand that take a value (LightningCLI's config files)."""

_OWN_PACKAGES = ("viscy_utils", "viscy_data", "viscy_transforms", "viscy_models", "dynaclr")
"""Packages whose loggers follow ``VISCY_LOG_LEVEL`` and whose input errors are reported in one line."""

_INPUT_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError)
"""Errors that VisCy's validation raises for a bad argument or path."""

_LIGHTNING_TIP = r"💡 Tip: .*\[lit(logger|models)\]"
"""Lightning's advertisements for its cloud packages, logged at INFO by every run."""

_UNACTIONABLE_WARNINGS = (
    # torch deprecated LeafSpec, which Lightning's own pytree helper still builds
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"lightning\."),
    # run_cli(args) never mixes its args with sys.argv, which is what Lightning warns about
    (r"LightningCLI's args parameter is intended to run from within Python", UserWarning, r"lightning\."),
)
"""Third-party warnings about how the libraries call each other: (message regex, category, module regex)."""


class ConfigError(ValueError):
    """A class named in the configuration could not be instantiated.

    Parameters
    ----------
    error : Exception
        What instantiation raised: usually jsonargparse's error, which wraps the error that
        the class itself raised.

    Attributes
    ----------
    cause : BaseException
        The error the class raised (``error`` unwrapped from jsonargparse's errors).
    """

    def __init__(self, error: BaseException) -> None:
        self.cause = _unwrap_parser_errors(error)
        super().__init__(_one_line(self.cause))


class ArgumentsError(ValueError):
    """The command line or a configuration file does not parse (an unknown key, a value of the wrong type).

    The message is one line, naming the closest valid key of an unknown one
    (:func:`viscy_utils.argument_errors.describe_argument_error`).
    """


def _innermost_module(error: BaseException) -> str:
    """Name of the module whose code raised ``error`` (its innermost traceback frame)."""
    traceback = error.__traceback__
    if traceback is None:
        return ""
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    return str(traceback.tb_frame.f_globals.get("__name__", ""))


def _raised_by(error: BaseException, packages: Sequence[str]) -> bool:
    """Whether ``error`` was raised by code of one of ``packages``."""
    return _innermost_module(error).split(".", 1)[0] in packages


def _unwrap_parser_errors(error: BaseException) -> BaseException:
    """Follow the explicit causes of errors that jsonargparse raised, down to the user's class's error."""
    while error.__cause__ is not None and _raised_by(error, ("jsonargparse",)):
        error = error.__cause__
    return error


def _one_line(error: BaseException) -> str:
    """``"ValueError: message"``, as the last line of a traceback reads."""
    return f"{type(error).__name__}: {error}"


def _log_level() -> str:
    """Return the log level named by ``VISCY_LOG_LEVEL`` (default ``INFO``), validated."""
    level_name = os.environ.get(LOG_LEVEL_ENV, "INFO").upper()
    valid = ["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"]
    if level_name not in valid:
        raise ValueError(f"{LOG_LEVEL_ENV}={level_name!r} is not a log level; valid levels: {valid}.")
    return level_name


def _configure_logging(level_name: str) -> None:
    """Set the log level of Lightning and VisCy, after Lightning has set up its own handlers."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("lightning.pytorch", "lightning.fabric", *_OWN_PACKAGES):
        logging.getLogger(name).setLevel(level_name)


def _config_subcommand(config_files: Sequence[str]) -> str | None:
    """Return the ``subcommand`` key of the last top-level config file that sets one."""
    for path in reversed(config_files):
        if Path(path).is_file():
            config = yaml.safe_load(Path(path).read_text())
            if isinstance(config, dict) and isinstance(config.get("subcommand"), str):
                return config["subcommand"]
    return None


def _subcommand(args: Sequence[str], read_configs: bool = True) -> str | None:
    """Return the subcommand that ``args`` run, as the parser sees it.

    That is the first argument that is not an option or the value of ``-c``/``--config``
    (the options LightningCLI accepts before the subcommand); without one, the
    ``subcommand`` key of those config files when ``read_configs``.
    """
    config_files = []
    tokens = iter(args)
    for token in tokens:
        if token in _CONFIG_OPTIONS:
            config_files.append(next(tokens, ""))
        elif token.startswith("--config="):
            config_files.append(token.partition("=")[2])
        elif not token.startswith("-"):
            return token
    return _config_subcommand(config_files) if read_configs else None


class _DropRecords(logging.Filter):
    """Drops log records whose message matches a regular expression."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the records that do not match."""
        return re.match(self.pattern, record.getMessage()) is None


@contextlib.contextmanager
def _third_party_noise_silenced() -> Iterator[None]:
    """Hide third-party tips and warnings that no user of the command can act on, for one run."""
    tips = _DropRecords(_LIGHTNING_TIP)
    rank_zero_logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    rank_zero_logger.addFilter(tips)
    try:
        with warnings.catch_warnings():
            for message, category, module in _UNACTIONABLE_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category, module=module)
            yield
    finally:
        rank_zero_logger.removeFilter(tips)


def run_cli(args: Sequence[str] | None = None) -> VisCyCLI:
    """Parse ``args`` (``sys.argv[1:]`` when None), run the chosen subcommand and return the CLI.

    Errors propagate: :class:`ArgumentsError` when the arguments or config files do not parse,
    :class:`ConfigError` when a configured class fails to instantiate. :func:`main` reports
    them instead.

    Parameters
    ----------
    args : sequence of str, optional
        Command-line arguments, e.g. ``["fit", "-c", "fit.yml"]``.

    Returns
    -------
    VisCyCLI
        The CLI after the run, with its ``trainer``, ``model`` and ``datamodule``.

    Raises
    ------
    ValueError
        If ``VISCY_LOG_LEVEL`` is not a log level.
    ArgumentsError
        If the arguments or config files do not parse.
    ConfigError
        If a class named in the configuration fails to instantiate.
    """
    level_name = _log_level()
    subcommand = _subcommand(sys.argv[1:] if args is None else args)
    with _third_party_noise_silenced():
        import torch
        from lightning.pytorch import LightningDataModule, LightningModule

        from viscy_utils.lightning_cli import VisCyCLI
        from viscy_utils.trainer import VisCyTrainer

        # Lightning gives its loggers their own handlers when the root logger has none yet
        _configure_logging(level_name)
        torch.set_float32_matmul_precision("high")
        require_model = subcommand not in _MODEL_FREE_SUBCOMMANDS
        require_data = subcommand not in _DATA_FREE_SUBCOMMANDS
        return VisCyCLI(
            model_class=LightningModule,
            datamodule_class=LightningDataModule if require_data else None,
            trainer_class=VisCyTrainer,
            seed_everything_default=42,
            subclass_mode_model=require_model,
            subclass_mode_data=require_data,
            args=None if args is None else list(args),
            parser_kwargs={"description": DESCRIPTION},
        )


def _reportable_cause(error: Exception) -> BaseException | None:
    """Return the error to report in one line, or None when its traceback is needed.

    Argument and configuration errors are always reportable, and so are image read errors
    (:class:`~viscy_data.read_errors.ArrayReadError`, which names the store, FOV and time point,
    also when a DataLoader worker raised it); while a subcommand runs, so are input errors (bad
    values, missing or existing paths) that VisCy's own validation raised.
    """
    from viscy_data.read_errors import ArrayReadError

    if isinstance(error, ConfigError):
        return error.cause
    if isinstance(error, ArgumentsError | ArrayReadError):
        return error
    if isinstance(error, _INPUT_ERRORS) and _raised_by(error, _OWN_PACKAGES):
        return error
    return None


def _last_line(error: BaseException) -> str:
    """Return the line that reports ``error``: ``"ValueError: message"``, as the last line of a traceback reads.

    An error re-raised from a DataLoader worker gives the original's line; an :class:`ArgumentsError`, its message.
    """
    message = str(error)
    if isinstance(error, ArgumentsError):  # says what is wrong in the user's words, without a class name
        return message
    if "\nOriginal Traceback" not in message:
        return _one_line(error)
    # torch's ExceptionWrapper puts the worker's traceback into the message; its last line is the error's
    qualified_name, _, text = message.rstrip().splitlines()[-1].partition(": ")
    return f"{qualified_name.rpartition('.')[2]}: {text}"


def main(args: Sequence[str] | None = None) -> None:
    """Run the ``viscy`` command line, reporting argument, configuration, input and read errors in one line.

    ``viscy``, ``viscy -h`` and ``viscy --help`` list the subcommands of
    :data:`SUBCOMMAND_HELP`, and ``viscy SUBCOMMAND --help`` shows a subcommand's main options,
    without importing torch; ``--help-all`` asks the Lightning CLI for its complete help
    (see :mod:`viscy_utils.cli_help`). Any other ``args`` go to
    :func:`run_cli`. When the arguments do not parse, a configured class fails to
    instantiate, a subcommand fails on a bad input that VisCy validates, or an image cannot be
    read, the last line of stderr is the cause (``ValueError: ...``) and the exit status is 1;
    with ``VISCY_LOG_LEVEL=DEBUG`` the error is raised with its traceback instead. Other errors
    keep their traceback.

    Parameters
    ----------
    args : sequence of str, optional
        Command-line arguments, e.g. ``["fit", "-c", "fit.yml"]``; ``sys.argv[1:]`` when None.
    """
    from viscy_utils.cli_help import show_help_if_asked  # imports this module: not at its top

    if show_help_if_asked(sys.argv[1:] if args is None else args):
        return
    try:
        run_cli(args)
    except Exception as error:
        cause = _reportable_cause(error)
        if cause is None or os.environ.get(LOG_LEVEL_ENV, "").upper() == "DEBUG":
            raise
        if isinstance(error, ArgumentsError):
            stage = "reading the arguments and configuration"
        elif isinstance(error, ConfigError):
            stage = "instantiating the configured classes"
        else:
            stage = "running the command"
        print(f"Error while {stage} (set {LOG_LEVEL_ENV}=DEBUG to see the traceback):", file=sys.stderr)
        print(_last_line(cause), file=sys.stderr)
        sys.exit(1)


def __getattr__(name: str) -> Any:
    """Import :class:`VisCyCLI` (and with it torch and Lightning) on first use."""
    if name == "VisCyCLI":
        from viscy_utils.lightning_cli import VisCyCLI

        return VisCyCLI
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    # `python -m viscy_utils.cli` runs this file as `__main__`: run the imported module, whose
    # ConfigError is the one VisCyCLI raises
    from viscy_utils.cli import main as _main

    _main()
