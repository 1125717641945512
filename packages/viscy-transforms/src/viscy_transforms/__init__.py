"""Batched GPU and per-sample MONAI-style augmentation and normalization transforms for microscopy volumes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("viscy-transforms")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__: list[str] = []
