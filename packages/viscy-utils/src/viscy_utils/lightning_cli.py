"""``VisCyCLI``: the Lightning CLI behind the ``viscy`` command (imported only when a subcommand runs).

Import it as ``from viscy_utils.cli import VisCyCLI``; :func:`viscy_utils.cli.run_cli` builds it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
from argparse import ArgumentError
from datetime import datetime
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from viscy_utils.argument_errors import describe_argument_error
from viscy_utils.cli import SUBCOMMAND_HELP, VISCY_SUBCOMMANDS, ArgumentsError, ConfigError, _subcommand
from viscy_utils.resume import find_last_checkpoint
from viscy_utils.trainer import VisCyTrainer

__all__ = ["LogDirConfigCallback", "VisCyCLI"]

_CHECKPOINT_HPARAMS_SUBCOMMANDS = frozenset({"fit"})

_OPTIONAL_LOGGER_MODULES = {
    "WandbLogger": ("wandb", "pip install 'viscy-utils[wandb]'"),
    "MLFlowLogger": ("mlflow", "pip install mlflow"),
    "CometLogger": ("comet_ml", "pip install comet-ml"),
    "NeptuneLogger": ("neptune", "pip install neptune"),
}
"""Loggers whose backend is an optional package: class name -> (module, install command)."""

_logger = logging.getLogger(__name__)


def _drop_unavailable_loggers(logger_config: Any) -> Any:
    """Remove loggers whose optional backend is not installed, warning for each one."""
    configs = logger_config if isinstance(logger_config, list) else [logger_config]
    kept = []
    for config in configs:
        class_path = config.get("class_path", "") if isinstance(config, dict | Namespace) else ""
        requirement = _OPTIONAL_LOGGER_MODULES.get(str(class_path).rsplit(".", 1)[-1])
        if requirement is not None and importlib.util.find_spec(requirement[0]) is None:
            _logger.warning(
                "%s needs the %r package, which is not installed (%s); using the default TensorBoard logger instead.",
                class_path,
                requirement[0],
                requirement[1],
            )
            continue
        kept.append(config)
    if not isinstance(logger_config, list):
        return kept[0] if kept else None
    return kept or None


class LogDirConfigCallback(SaveConfigCallback):
    """Save the run's ``config.yaml`` into its logger's directory, and nowhere else.

    A run without a logger (``logger: false``, usual for ``predict``) has no log directory of
    its own: Lightning would write ``config.yaml`` into the working directory, replacing a
    user's file of that name. Such runs save no config.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Save the config when the trainer has a logger."""
        if trainer.logger is not None:
            super().setup(trainer, pl_module, stage)


class VisCyCLI(LightningCLI):
    """Lightning CLI with VisCy's subcommands, logging setup and safe defaults.

    - ``preprocess``, ``export``, ``precompute``, ``rechunk`` and ``convert_to_anndata`` run the
      :class:`~viscy_utils.trainer.VisCyTrainer` methods of the same name.
    - Without a configured logger, runs log to TensorBoard under
      ``<default_root_dir>/lightning_logs/<YYYYmmdd-HHMMSS>``; a configured logger whose
      optional backend (e.g. wandb) is missing is replaced by that default with a warning.
    - Re-running into an existing log directory overwrites the saved ``config.yaml``; a run
      without a logger saves none (see :class:`LogDirConfigCallback`).
    - A checkpoint's hyperparameters override the model config only for ``fit``;
      ``predict``/``test``/``validate``/``export`` keep the model as configured.
    - A configured class that fails to instantiate raises :class:`~viscy_utils.cli.ConfigError`
      naming the original error; arguments or config keys that do not parse raise
      :class:`~viscy_utils.cli.ArgumentsError`, one line naming the closest valid key.
    - ``fit --ckpt_path last`` resumes from the newest ``last.ckpt`` that earlier attempts of the
      same configuration wrote (see :func:`~viscy_utils.resume.find_last_checkpoint`), logging
      into that attempt's run directory; when there is none it says where it looked and trains
      from the start.
    - A ``fit`` that fails before its first optimizer step removes the run directories it created.
    - Each subcommand's help starts with its line in :data:`~viscy_utils.cli.SUBCOMMAND_HELP`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_callback", LogDirConfigCallback)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        parser_kwargs = dict(kwargs.get("parser_kwargs") or {})
        for name, description in SUBCOMMAND_HELP.items():
            parser_kwargs[name] = {"description": description, **parser_kwargs.get(name, {})}
        # parse errors raise ArgumentError, which parse_arguments turns into a one-line ArgumentsError
        parser_kwargs.setdefault("exit_on_error", False)
        kwargs["parser_kwargs"] = parser_kwargs
        self._resumed_version: str | None = None
        self._new_run_dirs: list[Path] = []
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            self._remove_run_dirs_of_failed_start()
            raise

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's subcommands plus VisCy's, with the arguments the CLI fills in itself."""
        subcommands = LightningCLI.subcommands()
        subcommands.update({name: {"model", "datamodule"} for name in VISCY_SUBCOMMANDS})
        return subcommands

    def _parse_ckpt_path(self) -> None:
        """Merge checkpoint hyperparameters into the model config for ``fit`` only.

        A checkpoint whose hyperparameters cannot be parsed (Lightning issue #21255) is
        used for its weights alone, with a warning, instead of aborting.
        """
        if self.config.get("subcommand") not in _CHECKPOINT_HPARAMS_SUBCOMMANDS:
            return
        try:
            super()._parse_ckpt_path()
        except (SystemExit, ArgumentError):
            _logger.warning("Could not parse the checkpoint's hyperparameters; keeping the configured model.")

    def parse_arguments(self, parser: ArgumentParser, args: Any) -> None:
        """Parse the arguments, raising :class:`~viscy_utils.cli.ArgumentsError` in one line when they do not parse."""
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as error:
            given = sys.argv[1:] if args is None else args
            subcommand = _subcommand(given) if isinstance(given, list | tuple) else None
            raise ArgumentsError(describe_argument_error(str(error), subcommand, VisCyTrainer)) from error

    def before_instantiate_classes(self) -> None:
        """Replace configured loggers whose optional backend is missing; find ``--ckpt_path last``."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer_config = config.get("trainer")
        if trainer_config is not None and trainer_config.get("logger") not in (None, True, False):
            trainer_config["logger"] = _drop_unavailable_loggers(trainer_config["logger"])
        if self.subcommand == "fit" and trainer_config is not None:
            self._resolve_last_checkpoint(config, trainer_config)
        _check_checkpoint_exists(config.get("ckpt_path"))

    def _resolve_last_checkpoint(self, config: Namespace, trainer_config: Namespace) -> None:
        """Point ``ckpt_path: last`` at the newest ``last.ckpt`` of earlier attempts, in their run directory."""
        found = find_last_checkpoint(trainer_config)
        if found is None:  # a logger whose run directories only Lightning knows
            return
        if config.get("ckpt_path") != "last":
            if config.get("ckpt_path") is None and found.path is not None and found.version is None:
                _logger.warning(
                    "%s holds the last checkpoint of an earlier run; this run starts from the beginning and "
                    "saves its own beside it (run with --ckpt_path last to continue that run instead).",
                    found.path,
                )
            return
        if found.path is None:
            _logger.warning(
                "--ckpt_path last: no last checkpoint in %s; training starts from the beginning.",
                " or ".join(found.looked_in),
            )
            config["ckpt_path"] = None
            return
        _logger.info("Resuming from %s", found.path)
        config["ckpt_path"] = str(found.path)
        if found.version is not None:
            logger = trainer_config.get("logger")
            logger = logger[0] if isinstance(logger, list) else logger
            if isinstance(logger, Namespace | dict):
                logger["init_args"]["version"] = found.version
            else:
                self._resumed_version = found.version

    def instantiate_classes(self) -> None:
        """Instantiate the configured classes and the trainer.

        Raises
        ------
        ConfigError
            If a class fails to instantiate; its ``cause`` is the error the class raised,
            unwrapped from jsonargparse's errors.
        """
        try:
            super().instantiate_classes()
        except Exception as error:
            raise ConfigError(error) from error

    def instantiate_trainer(self, **kwargs: Any) -> VisCyTrainer:
        """Instantiate the trainer, adding the default TensorBoard logger when none is configured."""
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True) and "logger" not in kwargs:
            save_dir = trainer_config.get("default_root_dir") or os.getcwd()
            version = self._resumed_version or datetime.now().strftime("%Y%m%d-%H%M%S")
            kwargs["logger"] = TensorBoardLogger(save_dir=save_dir, version=version, log_graph=False)
        trainer = super().instantiate_trainer(**kwargs)
        self._new_run_dirs = _new_run_dirs(trainer)
        return trainer

    def _remove_run_dirs_of_failed_start(self) -> None:
        """Remove the directories a ``fit`` created when it failed before its first optimizer step."""
        trainer = getattr(self, "trainer", None)
        if getattr(self, "subcommand", None) != "fit" or trainer is None:
            return
        if trainer.global_step > 0 or not trainer.is_global_zero:
            return
        for path in self._new_run_dirs:
            if path.is_dir():
                shutil.rmtree(path)
                _logger.info("Removed %s: the run failed before its first step.", path)


_CKPT_PATH_KEYWORDS = frozenset({"last", "best", "hpc"})
"""Values of ``ckpt_path`` that Lightning resolves to a file itself (so do ``registry:...`` and URLs)."""


def _check_checkpoint_exists(ckpt_path: str | None) -> None:
    """Raise ``FileNotFoundError`` for a local ``ckpt_path`` file that does not exist (before any work starts)."""
    if ckpt_path is None or ckpt_path in _CKPT_PATH_KEYWORDS:
        return
    if str(ckpt_path).startswith("registry") or "://" in str(ckpt_path):
        return
    if not Path(ckpt_path).expanduser().is_file():
        raise FileNotFoundError(f"ckpt_path {str(ckpt_path)!r} does not exist (relative to {os.getcwd()}).")


def _topmost_new_dir(path: Path) -> Path | None:
    """Return the outermost directory of ``path`` that does not exist yet (None when ``path`` exists)."""
    path = path.absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def _new_run_dirs(trainer: Trainer) -> list[Path]:
    """Return the directories that the run's loggers and checkpoint callbacks will create and that do not exist yet."""
    planned = [Path(logger.log_dir) for logger in trainer.loggers if isinstance(logger, TensorBoardLogger | CSVLogger)]
    planned += [
        Path(callback.dirpath)
        for callback in trainer.callbacks
        if isinstance(callback, ModelCheckpoint) and callback.dirpath is not None
    ]
    return sorted({new for path in planned if (new := _topmost_new_dir(path)) is not None})
