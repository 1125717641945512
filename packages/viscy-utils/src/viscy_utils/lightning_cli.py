"""``VisCyCLI``: the Lightning CLI behind the ``viscy`` command (imported only when a subcommand runs).

Import it as ``from viscy_utils.cli import VisCyCLI``; :func:`viscy_utils.cli.run_cli` builds it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from datetime import datetime
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger

from viscy_utils.cli import SUBCOMMAND_HELP, VISCY_SUBCOMMANDS, ConfigError
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

    - ``preprocess``, ``export``, ``precompute`` and ``convert_to_anndata`` run the
      :class:`~viscy_utils.trainer.VisCyTrainer` methods of the same name.
    - Without a configured logger, runs log to TensorBoard under
      ``<default_root_dir>/lightning_logs/<YYYYmmdd-HHMMSS>``; a configured logger whose
      optional backend (e.g. wandb) is missing is replaced by that default with a warning.
    - Re-running into an existing log directory overwrites the saved ``config.yaml``; a run
      without a logger saves none (see :class:`LogDirConfigCallback`).
    - A checkpoint's hyperparameters override the model config only for ``fit``;
      ``predict``/``test``/``validate``/``export`` keep the model as configured.
    - A configured class that fails to instantiate raises :class:`~viscy_utils.cli.ConfigError`
      naming the original error.
    - Each subcommand's help starts with its line in :data:`~viscy_utils.cli.SUBCOMMAND_HELP`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_callback", LogDirConfigCallback)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        parser_kwargs = dict(kwargs.get("parser_kwargs") or {})
        for name, description in SUBCOMMAND_HELP.items():
            parser_kwargs[name] = {"description": description, **parser_kwargs.get(name, {})}
        kwargs["parser_kwargs"] = parser_kwargs
        super().__init__(*args, **kwargs)

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
        except SystemExit:
            _logger.warning("Could not parse the checkpoint's hyperparameters; keeping the configured model.")

    def before_instantiate_classes(self) -> None:
        """Replace configured loggers whose optional backend is missing."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer_config = config.get("trainer")
        if trainer_config is not None and trainer_config.get("logger") not in (None, True, False):
            trainer_config["logger"] = _drop_unavailable_loggers(trainer_config["logger"])

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
            kwargs["logger"] = TensorBoardLogger(
                save_dir=save_dir, version=datetime.now().strftime("%Y%m%d-%H%M%S"), log_graph=False
            )
        return super().instantiate_trainer(**kwargs)
