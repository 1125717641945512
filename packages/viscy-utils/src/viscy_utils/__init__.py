"""Training infrastructure for VisCy: trainer, CLI, embedding writer, normalization metadata and evaluation."""

from importlib.metadata import PackageNotFoundError, version

from viscy_utils.log_images import detach_sample, render_images
from viscy_utils.mp_utils import get_val_stats, mp_wrapper
from viscy_utils.normalize import hist_clipping, unzscore, zscore

try:
    __version__ = version("viscy-utils")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["detach_sample", "get_val_stats", "hist_clipping", "mp_wrapper", "render_images", "unzscore", "zscore"]
