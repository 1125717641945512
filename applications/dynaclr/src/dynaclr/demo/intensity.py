"""Per-cell intensity statistics of the encoder's input patches, as a baseline to the learned embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule

from dynaclr.engine import ContrastivePrediction

__all__ = ["DEFAULT_PERCENTILES", "PatchIntensityFeatures", "intensity_feature_names"]

DEFAULT_PERCENTILES = (1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0)
"""Percentiles of each channel's patch intensities in :class:`PatchIntensityFeatures`."""


def intensity_feature_names(channels: Sequence[str], percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> list[str]:
    """Names of the columns of :class:`PatchIntensityFeatures`, channel by channel.

    Parameters
    ----------
    channels : sequence of str
        Channel labels, in model order.
    percentiles : sequence of float
        The percentiles computed.

    Returns
    -------
    list of str
        ``"<channel>_mean"``, ``"<channel>_std"``, then ``"<channel>_p<q>"`` for each percentile.
    """
    statistics = ["mean", "std", *(f"p{q:g}" for q in percentiles)]
    return [f"{channel}_{statistic}" for channel in channels for statistic in statistics]


class PatchIntensityFeatures(LightningModule):
    """Predict-only "encoder" whose embedding is each channel's mean, std and percentiles over the patch.

    It reads the same batches as :class:`~dynaclr.engine.ContrastiveModule` (the normalized,
    centre-cropped ``anchor`` patches of a predict run) and returns them in the same shape, so that
    :class:`~viscy_utils.callbacks.EmbeddingWriter` stores them like learned embeddings: same cells,
    same order, same ``obs``. The statistics ignore where in the patch an intensity lies.

    Parameters
    ----------
    percentiles : sequence of float
        Percentiles (0-100) of each channel's intensities.

    Raises
    ------
    ValueError
        If a percentile lies outside ``[0, 100]``.
    """

    def __init__(self, percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> None:
        super().__init__()
        if any(not 0.0 <= q <= 100.0 for q in percentiles):
            raise ValueError(f"percentiles must lie in [0, 100], got {list(percentiles)}.")
        self.percentiles = [float(q) for q in percentiles]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(B, C * (2 + len(percentiles)))`` statistics of ``(B, C, Z, Y, X)`` patches, channel by channel."""
        values = x.flatten(start_dim=2).float()
        quantiles = torch.quantile(values, values.new_tensor(self.percentiles) / 100.0, dim=2).permute(1, 2, 0)
        statistics = torch.cat([values.mean(dim=2, keepdim=True), values.std(dim=2, keepdim=True), quantiles], dim=2)
        return statistics.flatten(start_dim=1)

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> ContrastivePrediction:
        """Return the statistics as both ``features`` and ``projections``, with the batch's tracking index."""
        features = self(batch["anchor"])
        return {"features": features, "projections": features, "index": batch["index"]}
