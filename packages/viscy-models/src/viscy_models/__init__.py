"""Network architectures for virtual staining and representation learning on microscopy volumes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("viscy-models")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__: list[str] = []
