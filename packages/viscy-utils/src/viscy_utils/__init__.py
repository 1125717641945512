"""Training infrastructure for VisCy: trainer, CLI, embedding writer, normalization metadata and evaluation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("viscy-utils")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__: list[str] = []
