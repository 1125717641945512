"""The ``dynaclr`` command: training and prediction through Lightning, plus the evaluation tools.

Usage::

    dynaclr fit -c fit.yml                 # every Lightning CLI flag works, e.g. --trainer.fast_dev_run true
    dynaclr predict -c predict.yml
    dynaclr demo                           # the whole workflow on a synthetic study
    dynaclr train-linear-classifier -c linear_classifier.yml
    dynaclr --help                         # answers without importing torch
    dynaclr fit --help                     # the main options, also without torch; --help-all: Lightning's

``fit``, ``validate``, ``test`` and ``predict`` hand their arguments to the ``viscy`` Lightning
CLI (:func:`viscy_utils.cli.main`), which reports a configuration error as one line, answers
``--help`` from :mod:`viscy_utils.cli_help` and hands ``--help-all`` to Lightning. The
other commands are registered by import path and imported only when they run or show their
own help, so listing them stays fast and a command whose optional dependencies are missing
says which extra to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

__all__ = ["COMMANDS", "LIGHTNING_SUBCOMMANDS", "CommandSpec", "LazyCommand", "dynaclr", "main"]

LIGHTNING_SUBCOMMANDS: dict[str, str] = {
    "fit": "Train a model from a LightningCLI config (dynaclr fit -c fit.yml).",
    "validate": "Run the validation loop of a model on a data module.",
    "test": "Run the test loop of a model on a data module.",
    "predict": "Predict with a trained model, e.g. embeddings with the EmbeddingWriter.",
}
"""Lightning's subcommands, run by the ``viscy`` Lightning CLI with all its flags."""


@dataclass(frozen=True)
class CommandSpec:
    """A ``dynaclr`` command that is imported only when it is used.

    Attributes
    ----------
    import_path : str
        ``"package.module:attribute"`` of the :class:`click.Command`.
    short_help : str
        One line shown by ``dynaclr --help``.
    extra : str
        The ``dynaclr`` extra whose packages the command needs.
    """

    import_path: str
    short_help: str
    extra: str = "eval"


COMMANDS: dict[str, CommandSpec] = {
    "demo": CommandSpec(
        "dynaclr.demo.command:main",
        "Train and evaluate DynaCLR on a synthetic study, end to end (no data or GPU needed).",
    ),
    "train-linear-classifier": CommandSpec(
        "dynaclr.evaluation.linear_classifiers.train_linear_classifier:main",
        "Train a linear classifier on cell embeddings.",
    ),
    "apply-linear-classifier": CommandSpec(
        "dynaclr.evaluation.linear_classifiers.apply_linear_classifier:main",
        "Apply a trained linear classifier to new embeddings.",
    ),
    "discover-datasets": CommandSpec(
        "dynaclr.evaluation.linear_classifiers.dataset_discovery:main",
        "Find embedding stores and their annotations, and write a dataset registry.",
    ),
    "generate-prediction-scripts": CommandSpec(
        "dynaclr.evaluation.generate_prediction_scripts:main",
        "Write SLURM scripts and predict configs for a trained checkpoint.",
    ),
    "generate-train-config": CommandSpec(
        "dynaclr.evaluation.linear_classifiers.generate_train_config:main",
        "Write one linear-classifier training config per task and channel.",
    ),
}
"""The lazily imported commands, by name."""


class LazyCommand(click.Command):
    """A click command that imports its implementation only when it runs or shows its own help.

    Parameters
    ----------
    name : str
        Command name.
    spec : CommandSpec
        Where the implementation lives and what it needs.
    """

    def __init__(self, name: str, spec: CommandSpec) -> None:
        super().__init__(name, short_help=spec.short_help, help=spec.short_help, add_help_option=False)
        self.spec = spec
        self._command: click.Command | None = None

    def _load(self) -> click.Command:
        """Import the implementation, naming the extra to install when a dependency is missing."""
        if self._command is None:
            module_name, attribute = self.spec.import_path.split(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as err:
                if err.name is not None and (err.name == "dynaclr" or err.name.startswith("dynaclr.")):
                    raise
                raise click.ClickException(
                    f"`dynaclr {self.name}` needs the optional package {err.name!r}: "
                    f"pip install 'dynaclr[{self.spec.extra}]'"
                ) from err
            self._command = getattr(module, attribute)
        return self._command

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        """Let the implementation parse the arguments, with its own options and help."""
        return self._load().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the implementation."""
        return self._load().invoke(ctx)


class _LightningCommand(click.Command):
    """Hands every argument, ``--help`` and ``--help-all`` included, to :func:`viscy_utils.cli.main`."""

    def __init__(self, name: str, short_help: str) -> None:
        super().__init__(
            name,
            short_help=short_help,
            help=short_help,
            add_help_option=False,
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
            params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        )

    def invoke(self, ctx: click.Context) -> None:
        from viscy_utils.cli import main as viscy_main

        viscy_main([self.name, *ctx.params["args"]])


class _DynaclrGroup(click.Group):
    """Lists Lightning's subcommands first, then the evaluation tools."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*LIGHTNING_SUBCOMMANDS, *COMMANDS]


@click.group(cls=_DynaclrGroup, context_settings={"help_option_names": ["-h", "--help"]})
def dynaclr() -> None:
    """DynaCLR: contrastive learning of cell-state dynamics, and tools to evaluate the embeddings."""


for _name, _help in LIGHTNING_SUBCOMMANDS.items():
    dynaclr.add_command(_LightningCommand(_name, _help))
for _name, _spec in COMMANDS.items():
    dynaclr.add_command(LazyCommand(_name, _spec))


def main(args: Sequence[str] | None = None) -> None:
    """Run the ``dynaclr`` command line.

    Parameters
    ----------
    args : sequence of str, optional
        Command-line arguments; ``sys.argv[1:]`` when None.
    """
    dynaclr.main(args=None if args is None else list(args), prog_name="dynaclr")


if __name__ == "__main__":
    main()
