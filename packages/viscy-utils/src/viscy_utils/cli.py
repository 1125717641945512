"""The ``viscy`` command line: Lightning's ``fit``/``validate``/``test``/``predict`` plus VisCy's own commands.

Usage::

    viscy fit -c fit.yml
    viscy predict -c predict.yml
    viscy export -c export_onnx.yml
    viscy preprocess --data_path plate.zarr
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import torch
from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from viscy_utils.trainer import VisCyTrainer

__all__ = ["LOG_LEVEL_ENV", "VisCyCLI", "main", "run_cli"]

LOG_LEVEL_ENV = "VISCY_LOG_LEVEL"
"""Environment variable with the log level of the ``viscy`` command (default ``INFO``)."""

VISCY_SUBCOMMANDS = ("preprocess", "export", "precompute", "convert_to_anndata")
"""Commands that :class:`VisCyTrainer` adds to Lightning's."""

_MODEL_FREE_SUBCOMMANDS = frozenset({"preprocess", "precompute", "convert_to_anndata"})
_DATA_FREE_SUBCOMMANDS = frozenset({"preprocess", "precompute", "export", "convert_to_anndata"})
_CHECKPOINT_HPARAMS_SUBCOMMANDS = frozenset({"fit"})

_OPTIONAL_LOGGER_MODULES = {
    "WandbLogger": ("wandb", "pip install 'viscy-utils[wandb]'"),
    "MLFlowLogger": ("mlflow", "pip install mlflow"),
    "CometLogger": ("comet_ml", "pip install comet-ml"),
    "NeptuneLogger": ("neptune", "pip install neptune"),
}
"""Loggers whose backend is an optional package: class name -> (module, install command)."""

_logger = logging.getLogger(__name__)


def _configure_logging() -> None:
    """Set the log level of Lightning and VisCy from ``VISCY_LOG_LEVEL``."""
    level_name = os.environ.get(LOG_LEVEL_ENV, "INFO").upper()
    valid = ["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"]
    if level_name not in valid:
        raise ValueError(f"{LOG_LEVEL_ENV}={level_name!r} is not a log level; valid levels: {valid}.")
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("lightning.pytorch", "viscy_utils", "viscy_data", "dynaclr"):
        logging.getLogger(name).setLevel(level_name)


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


class VisCyCLI(LightningCLI):
    """Lightning CLI with VisCy's subcommands, logging setup and safe defaults.

    - ``preprocess``, ``export``, ``precompute`` and ``convert_to_anndata`` run the
      :class:`~viscy_utils.trainer.VisCyTrainer` methods of the same name.
    - Without a configured logger, runs log to TensorBoard under
      ``<default_root_dir>/lightning_logs/<YYYYmmdd-HHMMSS>``; a configured logger whose
      optional backend (e.g. wandb) is missing is replaced by that default with a warning.
    - Re-running into an existing log directory overwrites the saved ``config.yaml``.
    - A checkpoint's hyperparameters override the model config only for ``fit``;
      ``predict``/``test``/``validate``/``export`` keep the model as configured.
    - ``VISCY_LOG_LEVEL`` sets the log level (default ``INFO``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
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

    def instantiate_trainer(self, **kwargs: Any) -> VisCyTrainer:
        """Instantiate the trainer, adding the default TensorBoard logger when none is configured."""
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True) and "logger" not in kwargs:
            save_dir = trainer_config.get("default_root_dir") or os.getcwd()
            kwargs["logger"] = TensorBoardLogger(
                save_dir=save_dir, version=datetime.now().strftime("%Y%m%d-%H%M%S"), log_graph=False
            )
        return super().instantiate_trainer(**kwargs)


def run_cli(args: Sequence[str] | None = None) -> VisCyCLI:
    """Parse ``args`` (``sys.argv[1:]`` when None), run the chosen subcommand and return the CLI.

    Parameters
    ----------
    args : sequence of str, optional
        Command-line arguments.

    Returns
    -------
    VisCyCLI
        The CLI after the run, with its ``trainer``, ``model`` and ``datamodule``.
    """
    _configure_logging()
    torch.set_float32_matmul_precision("high")
    tokens = set(sys.argv[1:] if args is None else args)
    require_model = not tokens & _MODEL_FREE_SUBCOMMANDS
    require_data = not tokens & _DATA_FREE_SUBCOMMANDS
    return VisCyCLI(
        model_class=LightningModule,
        datamodule_class=LightningDataModule if require_data else None,
        trainer_class=VisCyTrainer,
        seed_everything_default=42,
        subclass_mode_model=require_model,
        subclass_mode_data=require_data,
        args=None if args is None else list(args),
        parser_kwargs={"description": "Computer vision models for single-cell phenotyping."},
    )


def main() -> None:
    """Run the ``viscy`` command line on ``sys.argv``."""
    run_cli()


if __name__ == "__main__":
    main()
