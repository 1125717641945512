"""viscy-utils' optional dependencies: :mod:`viscy_data._optional`, with hints naming viscy-utils' extras."""

from __future__ import annotations

from functools import partial

from viscy_data import _optional

__all__ = ["import_optional", "require_installed"]

import_optional = partial(_optional.import_optional, package="viscy-utils")
"""``import_optional(module, *, extra, feature=None)``: import, or fail with ``pip install 'viscy-utils[<extra>]'``."""

require_installed = partial(_optional.require_installed, package="viscy-utils")
"""``require_installed(module, *, extra, feature=None)``: check that a module is installed, without importing it."""
