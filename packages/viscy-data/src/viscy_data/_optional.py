"""Lazy imports of optional dependencies with an install hint naming the extra."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType

__all__ = ["import_optional", "require_modules"]


def require_modules(modules: Sequence[str], *, extra: str, feature: str) -> list[ModuleType]:
    """Import several optional modules, or fail naming every missing one.

    Parameters
    ----------
    modules : Sequence[str]
        Importable module names, e.g. ``["pycocotools.coco", "tifffile"]``.
    extra : str
        The viscy-data extra that installs them, e.g. ``"livecell"``.
    feature : str
        What needs them, used in the error message, e.g. ``"LiveCellDataset"``.

    Returns
    -------
    list[ModuleType]
        The imported modules, in the order asked.

    Raises
    ------
    ImportError
        If any module is missing; the message names the missing packages and the
        ``pip install 'viscy-data[<extra>]'`` command.
    """
    imported: list[ModuleType] = []
    missing: list[str] = []
    for name in modules:
        try:
            imported.append(importlib.import_module(name))
        except ImportError:
            missing.append(name.split(".")[0])
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ImportError(
            f"{', '.join(missing)} {verb} required for {feature}. Install with: pip install 'viscy-data[{extra}]'"
        )
    return imported


def import_optional(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import one optional module, or fail with the install hint.

    Parameters
    ----------
    module : str
        Importable module name, e.g. ``"tensorstore"``.
    extra : str
        The viscy-data extra that installs it.
    feature : str
        What needs it, used in the error message.

    Returns
    -------
    ModuleType
        The imported module.

    Raises
    ------
    ImportError
        If the module is missing.
    """
    return require_modules([module], extra=extra, feature=feature)[0]
