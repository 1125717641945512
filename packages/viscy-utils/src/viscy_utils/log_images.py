"""Turn batches of 5-D image tensors into RGB grids for experiment loggers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["detach_sample", "render_images"]


def detach_sample(imgs: Sequence[torch.Tensor], log_samples_per_batch: int) -> list[list[np.ndarray]]:
    """Take the mid-depth slice of the first samples of every view.

    Parameters
    ----------
    imgs : sequence of Tensor
        Views of one batch (e.g. source, target, prediction), each ``(B, C, Z, Y, X)``.
        Views may have different channel counts.
    log_samples_per_batch : int
        Number of samples to keep (at most ``B``).

    Returns
    -------
    list of list of np.ndarray
        ``samples[i][v]`` is view ``v`` of sample ``i`` at ``Z // 2``: ``(C, Y, X)`` with that
        view's own ``C``, or ``(Y, X)`` when the view has one channel.
    """
    num_samples = min(min(img.shape[0] for img in imgs), log_samples_per_batch)
    samples = []
    for i in range(num_samples):
        views = []
        for img in imgs:
            mid_slice = img[i][:, img.shape[2] // 2].detach().cpu().float().numpy()
            views.append(mid_slice[0] if mid_slice.shape[0] == 1 else mid_slice)
        samples.append(views)
    return samples


def _rescale(channel: np.ndarray) -> np.ndarray:
    """Map an image's intensity range linearly onto ``[0, 1]`` (constant images map to 0)."""
    low, high = float(np.min(channel)), float(np.max(channel))
    if high <= low:
        return np.zeros_like(channel, dtype=np.float32)
    return ((channel - low) / (high - low)).astype(np.float32)


def render_images(imgs: Sequence[Sequence[np.ndarray]], cmaps: Sequence[str] = ()) -> np.ndarray:
    """Render samples as one RGB image: channels and views side by side, samples stacked.

    Parameters
    ----------
    imgs : sequence of sequence of np.ndarray
        Output of :func:`detach_sample`: rows are samples, columns are views; each view is a
        ``(Y, X)`` image or a ``(C, Y, X)`` stack rendered channel by channel.
    cmaps : sequence of str
        Matplotlib colormap per view. Defaults to ``"gray"`` for the first view and
        ``"inferno"`` for the others.

    Returns
    -------
    np.ndarray
        ``uint8`` array of shape ``(H, W, 3)``.
    """
    from matplotlib import colormaps

    rows = []
    for sample in imgs:
        tiles = []
        for view_index, view in enumerate(sample):
            cmap_name = cmaps[view_index] if view_index < len(cmaps) else ("gray" if view_index == 0 else "inferno")
            cmap = colormaps[cmap_name]
            channels = [view] if view.ndim == 2 else list(view)
            tiles += [cmap(_rescale(channel))[..., :3] for channel in channels]
        rows.append(np.concatenate(tiles, axis=1))
    return (np.concatenate(rows, axis=0) * 255).round().astype(np.uint8)
