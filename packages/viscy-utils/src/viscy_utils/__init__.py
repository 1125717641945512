"""Training infrastructure for VisCy: trainer, CLI, embedding writer, normalization metadata and evaluation.

The helpers exported here are imported on first use, so that ``import viscy_utils`` (and the
``viscy --help`` it serves) does not import torch.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("viscy-utils")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

_EXPORTS = {
    "detach_sample": "viscy_utils.log_images",
    "render_images": "viscy_utils.log_images",
    "get_val_stats": "viscy_utils.mp_utils",
    "mp_wrapper": "viscy_utils.mp_utils",
    "hist_clipping": "viscy_utils.normalize",
    "unzscore": "viscy_utils.normalize",
    "zscore": "viscy_utils.normalize",
}
"""Exported name -> module that defines it."""

__all__ = ["detach_sample", "get_val_stats", "hist_clipping", "mp_wrapper", "render_images", "unzscore", "zscore"]


def __getattr__(name: str) -> Any:
    """Import an exported helper from its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
