"""OME-Zarr datasets, samplers and Lightning DataModules for microscopy time-lapse data."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("viscy-data")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__: list[str] = []
