"""Where ``--ckpt_path last`` finds the checkpoint of an interrupted run, from the trainer's configuration.

Lightning looks for ``last.ckpt`` in the directory the *new* run would write to. When the
logger numbers its runs (``version: null``, ``version_0``, ``version_1``...) that is a new,
empty directory, and the run silently starts over. :func:`find_last_checkpoint` looks where
earlier attempts of the same configuration wrote instead: the checkpoint callbacks' ``dirpath``,
the logger's fixed version, or the newest numbered version that holds a ``last.ckpt``, whose
version the resumed run then keeps.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_LOGGER_NAME", "LastCheckpoint", "find_last_checkpoint"]

DEFAULT_LOGGER_NAME = "lightning_logs"
"""The ``name`` of Lightning's TensorBoard and CSV loggers when none is given."""

_VERSIONED_LOGGERS = frozenset({"TensorBoardLogger", "CSVLogger"})
"""Loggers whose runs live in ``<save_dir>/<name>/<version>``, where ``ModelCheckpoint`` puts ``checkpoints/``."""

_LAST_CHECKPOINT_GLOB = "last*.ckpt"
"""``last.ckpt`` and the versioned ``last-v1.ckpt`` of ``ModelCheckpoint``."""


@dataclass(frozen=True)
class LastCheckpoint:
    """Where the last checkpoint of a run's earlier attempts is, and where it was looked for.

    Attributes
    ----------
    path : Path or None
        The newest ``last*.ckpt``; None when there is none.
    version : str or None
        The logger version (run directory name) the found checkpoint belongs to, when the logger
        numbers its runs: the resumed run must log there, not into a new version.
    looked_in : tuple of str
        The directories searched (with ``*`` for any version), for messages.
    """

    path: Path | None
    version: str | None
    looked_in: tuple[str, ...]


def _get(config: Any, key: str, default: Any = None) -> Any:
    """``config[key]`` of a dict or a jsonargparse ``Namespace``, ``default`` when unset or None."""
    value = config.get(key) if config is not None else None
    return default if value is None else value


def _class_name(class_path: str) -> str:
    return class_path.rsplit(".", 1)[-1]


def _is_checkpoint_callback(class_path: str) -> bool:
    """Whether ``class_path`` names a ``ModelCheckpoint`` (or a subclass), which keeps ``last.ckpt``."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return False
    return isinstance(cls, type) and issubclass(cls, ModelCheckpoint)


def _first_logger(trainer_config: Any) -> Any:
    """Return the first configured logger (the one ``ModelCheckpoint`` follows): a config, True/None or False."""
    logger = trainer_config.get("logger")
    if isinstance(logger, Sequence) and not isinstance(logger, str):
        return logger[0] if logger else False
    return logger


def _newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda path: path.stat().st_mtime_ns, default=None)


def find_last_checkpoint(trainer_config: Any, cwd: Path | None = None) -> LastCheckpoint | None:
    """Find the newest ``last*.ckpt`` that earlier attempts of a training configuration wrote.

    Parameters
    ----------
    trainer_config : dict or jsonargparse Namespace
        The ``trainer`` section of the configuration (``default_root_dir``, ``logger``,
        ``callbacks``).
    cwd : Path, optional
        Directory relative paths start from; the working directory when None.

    Returns
    -------
    LastCheckpoint or None
        The checkpoint, or None when the first logger keeps its runs where this function cannot
        tell (a logger other than TensorBoard or CSV, without a checkpoint ``dirpath``): Lightning
        then resolves ``last`` itself.
    """
    cwd = Path.cwd() if cwd is None else cwd
    root = cwd / Path(os.path.expanduser(str(_get(trainer_config, "default_root_dir", "."))))
    patterns: list[Path] = []
    callbacks = _get(trainer_config, "callbacks", [])
    for callback in callbacks if isinstance(callbacks, list) else [callbacks]:
        class_path = str(_get(callback, "class_path", ""))
        dirpath = _get(_get(callback, "init_args", {}), "dirpath")
        if dirpath is not None and _is_checkpoint_callback(class_path):
            patterns.append(cwd / Path(os.path.expanduser(str(dirpath))))
    logger = _first_logger(trainer_config)
    run_dirs: Path | None  # <save_dir>/<name>/<version or *>: where the logger's runs keep checkpoints/
    if logger is False:
        patterns.append(root / "checkpoints")
        run_dirs = None
    elif logger is None or logger is True:
        run_dirs = root / DEFAULT_LOGGER_NAME / "*"  # the default logger dates each run's version
    elif _class_name(str(_get(logger, "class_path", ""))) in _VERSIONED_LOGGERS:
        init_args = _get(logger, "init_args", {})
        save_dir = cwd / Path(os.path.expanduser(str(_get(init_args, "save_dir", root))))
        version = _get(init_args, "version")
        if version is not None and not isinstance(version, str):
            version = f"version_{version}"
        run_dirs = save_dir / str(_get(init_args, "name", DEFAULT_LOGGER_NAME)) / (version or "*")
    elif patterns:
        run_dirs = None
    else:
        return None
    if run_dirs is not None:
        patterns.append(run_dirs / "checkpoints")
    found = _newest([path for pattern in patterns for path in _glob(pattern / _LAST_CHECKPOINT_GLOB)])
    numbered = run_dirs is not None and run_dirs.name == "*"
    resumed_version = (
        found.parent.parent.name
        if numbered and found is not None and found.match(str(run_dirs / "checkpoints" / "*"))
        else None
    )
    return LastCheckpoint(found, resumed_version, tuple(str(pattern) for pattern in patterns))


def _glob(pattern: Path) -> list[Path]:
    """Files matching ``pattern``, whose parts may hold ``*``."""
    anchor = Path(pattern.anchor)
    return sorted(anchor.glob(str(pattern.relative_to(anchor))))
