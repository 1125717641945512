"""Check, at import and without importing them, that a command's optional packages are installed."""

from __future__ import annotations

import importlib.util

__all__ = ["EVAL_MODULES", "require_modules"]

EVAL_MODULES = ("anndata", "joblib", "pydantic", "sklearn", "zarr")
"""Top-level modules the ``eval`` extra of dynaclr installs and the classifier commands use."""


def require_modules(*names: str) -> None:
    """Raise :class:`ModuleNotFoundError` for the first of ``names`` that is not installed.

    The ``dynaclr`` CLI turns that error into the ``pip install 'dynaclr[eval]'`` hint, so
    calling this at the top of a command package makes the command fail before it starts
    (not hours into a run) when the extra is missing.

    Parameters
    ----------
    *names : str
        Top-level module names, e.g. ``"sklearn"``.

    Raises
    ------
    ModuleNotFoundError
        With ``name`` set to the missing module.
    """
    for name in names:
        if importlib.util.find_spec(name) is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
