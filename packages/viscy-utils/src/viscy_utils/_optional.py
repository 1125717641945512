"""Lazy imports of optional dependencies with an install hint."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["import_optional", "require_installed"]


def _missing(module_name: str, extra: str) -> str:
    return f"{module_name!r} is not installed; it comes with the {extra!r} extra: pip install 'viscy-utils[{extra}]'"


def require_installed(module_name: str, extra: str) -> None:
    """Check, without importing it, that an optional dependency is installed.

    Parameters
    ----------
    module_name : str
        Top-level module name, e.g. ``"umap"``.
    extra : str
        The viscy-utils extra that installs it.

    Raises
    ------
    ImportError
        If the module is not installed; the message names ``pip install 'viscy-utils[<extra>]'``.
    """
    if importlib.util.find_spec(module_name) is None:
        raise ImportError(_missing(module_name, extra))


def import_optional(module_name: str, extra: str) -> ModuleType:
    """Import an optional dependency, or explain which extra provides it.

    Parameters
    ----------
    module_name : str
        Dotted module name, e.g. ``"sklearn.decomposition"``.
    extra : str
        The viscy-utils extra that installs it, e.g. ``"eval"``.

    Returns
    -------
    ModuleType
        The imported module.

    Raises
    ------
    ImportError
        If the module is not installed; the message names ``pip install 'viscy-utils[<extra>]'``.
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"{module_name!r} is not installed; it comes with the {extra!r} extra: pip install 'viscy-utils[{extra}]'"
        ) from error
