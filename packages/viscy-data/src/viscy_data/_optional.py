"""Lazy imports of optional dependencies, failing with the ``pip install`` that provides them.

The one implementation for the workspace: viscy-utils' ``_optional`` binds ``package="viscy-utils"``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from types import ModuleType

__all__ = ["import_optional", "require_installed", "require_modules"]


def _missing_message(missing: Sequence[str], extra: str, feature: str | None, package: str) -> str:
    verb = "is" if len(missing) == 1 else "are"
    need = f"required for {feature}" if feature else "not installed"
    return f"{', '.join(missing)} {verb} {need}; it comes with the '{extra}' extra: pip install '{package}[{extra}]'"


def require_modules(
    modules: Sequence[str], *, extra: str, feature: str | None = None, package: str = "viscy-data"
) -> list[ModuleType]:
    """Import several optional modules, or fail naming every missing one.

    Parameters
    ----------
    modules : Sequence[str]
        Importable module names, e.g. ``["pycocotools.coco", "tifffile"]``.
    extra : str
        The extra that installs them, e.g. ``"livecell"``.
    feature : str, optional
        What needs them, named in the error message, e.g. ``"LiveCellDataset"``.
    package : str
        The distribution whose extra it is.

    Returns
    -------
    list[ModuleType]
        The imported modules, in the order asked.

    Raises
    ------
    ImportError
        If any module is missing; the message names the missing packages and the
        ``pip install '<package>[<extra>]'`` command.
    """
    imported: list[ModuleType] = []
    missing: list[str] = []
    for name in modules:
        try:
            imported.append(importlib.import_module(name))
        except ImportError:
            missing.append(name.split(".")[0])
    if missing:
        raise ImportError(_missing_message(missing, extra, feature, package))
    return imported


def import_optional(module: str, *, extra: str, feature: str | None = None, package: str = "viscy-data") -> ModuleType:
    """Import one optional module, or fail with the install hint.

    Parameters
    ----------
    module : str
        Importable module name, e.g. ``"tensorstore"``.
    extra : str
        The extra that installs it.
    feature : str, optional
        What needs it, named in the error message.
    package : str
        The distribution whose extra it is.

    Returns
    -------
    ModuleType
        The imported module.

    Raises
    ------
    ImportError
        If the module is missing.
    """
    return require_modules([module], extra=extra, feature=feature, package=package)[0]


def require_installed(module: str, *, extra: str, feature: str | None = None, package: str = "viscy-data") -> None:
    """Check, without importing it, that an optional module is installed.

    Parameters
    ----------
    module : str
        Top-level module name, e.g. ``"umap"``.
    extra : str
        The extra that installs it.
    feature : str, optional
        What needs it, named in the error message.
    package : str
        The distribution whose extra it is.

    Raises
    ------
    ImportError
        If the module is not installed.
    """
    if importlib.util.find_spec(module) is None:
        raise ImportError(_missing_message([module.split(".")[0]], extra, feature, package))
