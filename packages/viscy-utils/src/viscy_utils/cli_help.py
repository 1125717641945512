"""The help of the ``viscy`` command and of each subcommand, printed without importing torch.

``viscy --help`` lists the subcommands; ``viscy SUBCOMMAND --help`` (with or without
``-c CONFIG``) shows the subcommand's main options and its own arguments from
:data:`SUBCOMMAND_ARGUMENTS`. Both answer in a fraction of a second, where Lightning's
parser would first import torch, Lightning and every class it can configure.
``viscy SUBCOMMAND --help-all`` hands ``--help`` to the Lightning CLI for its complete help.

:func:`viscy_utils.cli.main` calls :func:`show_help_if_asked` before anything else.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from inspect import Parameter
from pathlib import Path
from typing import Any

from viscy_utils.cli import (
    _DATA_FREE_SUBCOMMANDS,
    _MODEL_FREE_SUBCOMMANDS,
    DESCRIPTION,
    LOG_LEVEL_ENV,
    SUBCOMMAND_HELP,
    _subcommand,
    run_cli,
)

__all__ = [
    "HELP_ALL_OPTION",
    "HELP_OPTIONS",
    "REQUIRED",
    "SUBCOMMAND_ARGUMENTS",
    "Argument",
    "show_help_if_asked",
    "static_help",
    "subcommand_help",
    "top_level_help",
]

HELP_ALL_OPTION = "--help-all"
"""The option that asks the Lightning CLI for its complete help (slow: imports torch)."""

HELP_OPTIONS = frozenset({"-h", "--help"})
"""The options that ask for the static help."""

REQUIRED = Parameter.empty
"""The ``default`` of an :class:`Argument` that has none (as :mod:`inspect` marks it)."""

_WIDTH = 100
"""Width of the help text."""

_LABEL_WIDTH = 28
"""Width of the column of option names; longer names put their description on the next line."""


@dataclass(frozen=True)
class Argument:
    """An argument of a subcommand's ``Trainer`` method, as the subcommand's help lists it.

    Attributes
    ----------
    name : str
        Parameter name; the option is ``--name``.
    metavar : str
        What the value looks like, e.g. ``CKPT_PATH`` or ``{true,false}``.
    help : str
        One sentence.
    default : Any
        The parameter's default, or :data:`REQUIRED`.
    """

    name: str
    metavar: str
    help: str
    default: Any = REQUIRED

    @property
    def label(self) -> str:
        """``--name METAVAR``."""
        return f"--{self.name} {self.metavar}"

    @property
    def description(self) -> str:
        """The help sentence and the default (or that the argument is required)."""
        if self.default is REQUIRED:
            return f"{self.help} (required)"
        return f"{self.help} (default: {_yaml_value(self.default)})"


_WEIGHTS_ONLY = Argument(
    "weights_only",
    "{true,false,null}",
    "Load only tensors and primitive types from the checkpoint (torch.load's weights_only).",
    None,
)


def _evaluation_arguments(loop: str) -> tuple[Argument, ...]:
    """Return the arguments of ``Trainer.validate`` and ``Trainer.test``."""
    return (
        Argument(
            "ckpt_path",
            "CKPT_PATH",
            f'Checkpoint to {loop} (a path, or "best", "last", "hpc", "registry").',
            None,
        ),
        Argument("verbose", "{true,false}", "Print the results.", True),
        _WEIGHTS_ONLY,
    )


SUBCOMMAND_ARGUMENTS: dict[str, tuple[Argument, ...]] = {
    "fit": (
        Argument(
            "ckpt_path",
            "CKPT_PATH",
            'Checkpoint to resume training from (a path, or "last", "hpc", "registry").',
            None,
        ),
        _WEIGHTS_ONLY,
    ),
    "validate": _evaluation_arguments("validate"),
    "test": _evaluation_arguments("test"),
    "predict": (
        Argument(
            "return_predictions",
            "{true,false,null}",
            "Return the predictions (true unless the accelerator spawns processes).",
            None,
        ),
        Argument(
            "ckpt_path",
            "CKPT_PATH",
            'Checkpoint to predict with (a path, or "best", "last", "hpc", "registry").',
            None,
        ),
        _WEIGHTS_ONLY,
    ),
    "preprocess": (
        Argument("data_path", "DATA_PATH", "HCS OME-Zarr plate to write the statistics into."),
        Argument("channel_names", "CHANNEL_NAMES", "Channel or list of channels to process; -1 for all.", -1),
        Argument("num_workers", "NUM_WORKERS", "Number of FOVs read in parallel.", 1),
        Argument("block_size", "BLOCK_SIZE", "Sampling step in Y and X, in pixels.", 32),
    ),
    "export": (
        Argument("export_path", "EXPORT_PATH", "The .onnx file to write."),
        Argument("ckpt_path", "CKPT_PATH", "Lightning checkpoint whose state_dict is loaded strictly."),
        Argument("format", "FORMAT", "Export format; only onnx.", "onnx"),
        Argument("overwrite", "{true,false}", "Replace an existing export_path.", False),
    ),
    "precompute": (
        Argument("data_path", "DATA_PATH", "HCS OME-Zarr plate."),
        Argument("output_path", "OUTPUT_PATH", "Directory to write."),
        Argument("channel_names", "CHANNEL_NAMES", "Channel or list of channels to keep."),
        Argument("subtrahends", "[ITEM,...]", 'Per channel: "mean" or a percentile to subtract.'),
        Argument("divisors", "[ITEM,...]", 'Per channel: "std" or a [low, high] percentile pair to divide by.'),
        Argument("image_array_key", "IMAGE_ARRAY_KEY", "Array inside each position.", "0"),
        Argument("include_wells", "INCLUDE_WELLS", "Well or list of wells to keep, e.g. A/1.", None),
        Argument("exclude_fovs", "EXCLUDE_FOVS", "FOV or list of FOVs to drop, e.g. A/1/0.", None),
        Argument("overwrite", "{true,false}", "Replace an existing output_path.", False),
    ),
    "rechunk": (
        Argument("data_path", "DATA_PATH", "HCS OME-Zarr plate to copy (only read)."),
        Argument("output_path", "OUTPUT_PATH", "The plate to write."),
        Argument("chunk_yx", "CHUNK_YX", "Chunk height and width in pixels; chunks hold all Z of one T and C.", 128),
        Argument(
            "dtype",
            "{uint16,float16,null}",
            "Storage type: uint16 for integer values, float16 (rounding error reported); null keeps the source's.",
            None,
        ),
        Argument("compression", "{none,lz4,zstd}", "Blosc compression of the chunks.", "lz4"),
        Argument(
            "shard",
            "{true,false}",
            "One shard per Z stack holding the small chunks (zarr format 3, OME-Zarr 0.5 plates only).",
            False,
        ),
        Argument("overwrite", "{true,false}", "Replace an existing output_path.", False),
    ),
    "convert_to_anndata": (
        Argument("embeddings_path", "EMBEDDINGS_PATH", "Legacy xarray embeddings (zarr)."),
        Argument("output_anndata_path", "OUTPUT_ANNDATA_PATH", "AnnData zarr store to write."),
        Argument("overwrite", "{true,false}", "Replace an existing store.", False),
    ),
}
"""Each subcommand's own arguments: those of the ``VisCyTrainer`` method of the same name that
the Lightning CLI exposes as options (``model``, ``datamodule`` and dataloaders excluded), in
signature order. The tests compare them with the method signatures."""


def _yaml_value(value: Any) -> str:
    """Write a default as it reads in a config file: ``null``, ``true``, ``32``, ``onnx``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _prog() -> str:
    """Return the command as the user typed it: ``python -m MODULE``, the console script, or ``viscy``."""
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if main_spec is not None:
        return f"python -m {main_spec.name.removesuffix('.__main__')}"
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name and name != "-c" and not name.endswith(".py") else "viscy"


def _options_table(rows: Sequence[tuple[str, str]]) -> str:
    """Lay out options and their descriptions in two columns, as argparse does.

    Each line of a description is wrapped on its own; a long option name puts its description
    on the next line.
    """
    indent = " " * (_LABEL_WIDTH + 2)
    lines = []
    for label, description in rows:
        wrapped = [
            wrapped_line
            for line in description.splitlines()
            for wrapped_line in textwrap.wrap(line, width=_WIDTH - len(indent), break_on_hyphens=False)
        ]
        if len(label) < _LABEL_WIDTH:
            lines.append(f"  {label:<{_LABEL_WIDTH}}{wrapped[0]}")
        else:
            lines += [f"  {label}", indent + wrapped[0]]
        lines += [indent + line for line in wrapped[1:]]
    return "\n".join(lines) + "\n"


def top_level_help(prog: str = "viscy") -> str:
    """Return the help of the command itself: the subcommands of :data:`~viscy_utils.cli.SUBCOMMAND_HELP`.

    Parameters
    ----------
    prog : str
        The command's name in the usage line.

    Returns
    -------
    str
        Usage, description, subcommands and options.
    """
    width = max(map(len, SUBCOMMAND_HELP)) + 4
    subcommands = "\n".join(f"  {name:<{width}}{text}" for name, text in SUBCOMMAND_HELP.items())
    return (
        f"usage: {prog} [-h] [-c CONFIG] SUBCOMMAND ...\n\n"
        f"{DESCRIPTION}\n\n"
        f"subcommands:\n{subcommands}\n\n"
        "options:\n"
        f"  {'-h, --help':<{width}}Show this help message and exit.\n"
        f"  {'-c, --config CONFIG':<{width}}Configuration file (YAML) with a section per subcommand.\n\n"
        f"Run `{prog} SUBCOMMAND --help` for the options of a subcommand, e.g. `{prog} fit --help`.\n"
        f"{LOG_LEVEL_ENV} sets the log level (default INFO; DEBUG also shows the traceback of errors).\n"
    )


def subcommand_help(subcommand: str, prog: str = "viscy") -> str:
    """Return the static help of a subcommand: its description, main options and own arguments.

    Parameters
    ----------
    subcommand : str
        A key of :data:`~viscy_utils.cli.SUBCOMMAND_HELP`, e.g. ``"fit"``.
    prog : str
        The command's name in the usage line.

    Returns
    -------
    str
        Usage, description, options, the subcommand's arguments and how to get Lightning's
        complete help.

    Raises
    ------
    KeyError
        If ``subcommand`` is not a subcommand (the message lists them).
    """
    if subcommand not in SUBCOMMAND_HELP:
        raise KeyError(f"{subcommand!r} is not a subcommand; subcommands: {list(SUBCOMMAND_HELP)}.")
    command = f"{prog} {subcommand}"
    with_model = subcommand not in _MODEL_FREE_SUBCOMMANDS
    with_data = subcommand not in _DATA_FREE_SUBCOMMANDS
    options = [
        ("-h, --help", "Show this help message and exit."),
        (HELP_ALL_OPTION, "Show Lightning's complete help, with every option (slow: imports torch)."),
        ("-c, --config CONFIG", "Configuration file (YAML); give several to merge them, later ones win."),
        (
            "--print_config[=flags]",
            "Print the configuration after applying all other arguments, and exit\n(flags: skip_default, skip_unset).",
        ),
        (
            "--seed_everything SEED",
            "Seed of every random generator, set before the classes are built;\ntrue for a random seed (default: 42).",
        ),
        ("--trainer.KEY VALUE", "A Trainer argument, e.g. --trainer.max_epochs 10."),
    ]
    classes = []
    for name, role, used in (("model", "LightningModule", with_model), ("data", "LightningDataModule", with_data)):
        if used:
            options.append(
                (
                    f"--{name} CLASS_PATH",
                    f"The {role}, by class path;\nset its arguments with --{name}.init_args.KEY VALUE.",
                )
            )
            classes.append(name)
    arguments = SUBCOMMAND_ARGUMENTS[subcommand]
    required = " ".join(argument.label for argument in arguments if argument.default is REQUIRED)
    usage = textwrap.fill(
        f"usage: {command} [-h] [{HELP_ALL_OPTION}] [-c CONFIG] [options] {required}".rstrip(),
        width=_WIDTH,
        subsequent_indent=" " * len(f"usage: {command} "),
        break_on_hyphens=False,
    )
    epilog = [
        "Options can also be set in the config file (e.g. `trainer: {max_epochs: 10}`); the command line wins.",
        f"Run `{command} {HELP_ALL_OPTION}` for Lightning's complete help, with every option of the trainer "
        f"(slow: imports torch){',' if classes else '.'}",
    ]
    if classes:
        alternative = f" (or `--{classes[1]}.help`)" if len(classes) > 1 else ""
        epilog.append(
            f"and `{command} --{classes[0]}.help CLASS_PATH`{alternative} for every argument of a configurable class."
        )
    epilog.append(f"{LOG_LEVEL_ENV} sets the log level (default INFO; DEBUG also shows the traceback of errors).")
    argument_rows = [(argument.label, argument.description) for argument in arguments]
    return (
        f"{usage}\n\n"
        f"{SUBCOMMAND_HELP[subcommand]}\n\n"
        f"options:\n{_options_table(options)}\n"
        f"arguments of {subcommand}:\n{_options_table(argument_rows)}\n" + "\n".join(epilog) + "\n"
    )


def static_help(args: Sequence[str], prog: str = "viscy") -> str | None:
    """Return the help that ``args`` ask for, or None when they ask for none this module gives.

    Parameters
    ----------
    args : sequence of str
        Command-line arguments, e.g. ``["fit", "-c", "fit.yml", "--help"]``.
    prog : str
        The command's name in the usage line.

    Returns
    -------
    str or None
        The top-level help for no arguments, or ``-h``/``--help`` without a subcommand; the
        subcommand's help for ``-h``/``--help`` with a known subcommand; None otherwise
        (including ``--help-all`` and unknown subcommands, which the Lightning CLI handles).
    """
    if not args:
        return top_level_help(prog)
    if HELP_ALL_OPTION in args or not HELP_OPTIONS & set(args):
        return None
    subcommand = _subcommand(args, read_configs=False)
    if subcommand is None:
        return top_level_help(prog)
    return subcommand_help(subcommand, prog) if subcommand in SUBCOMMAND_HELP else None


def show_help_if_asked(args: Sequence[str]) -> bool:
    """Print the help that ``args`` ask for; return whether they asked for help.

    ``-h``/``--help`` (or no arguments) print :func:`static_help` without importing torch;
    ``--help-all`` runs the Lightning CLI with ``--help`` in its place, which prints the
    complete help and exits.

    Parameters
    ----------
    args : sequence of str
        Command-line arguments, e.g. ``["fit", "--help"]``.

    Returns
    -------
    bool
        True when help was printed; False when ``args`` run a subcommand.
    """
    if HELP_ALL_OPTION in args:
        run_cli(["--help" if arg == HELP_ALL_OPTION else arg for arg in args])
        return True
    text = static_help(args, _prog())
    if text is None:
        return False
    print(text, end="")
    return True
