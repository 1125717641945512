"""Run dictionary transforms on batched patches channel by channel, with per-sample normalization metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.data.utils import collate_meta_tensor
from torch import Tensor

from viscy_data._typing import DictTransform, NormMeta

__all__ = ["collate_norm_meta", "transform_channel_wise"]


def collate_norm_meta(norm_metas: Sequence[NormMeta | None]) -> NormMeta | None:
    """Stack per-sample normalization metadata into ``{channel: {level: {stat: (B,) Tensor}}}``.

    Parameters
    ----------
    norm_metas : Sequence[NormMeta or None]
        One entry per sample, with time points already resolved
        (:func:`viscy_data.normalization.select_timepoint`).

    Returns
    -------
    NormMeta or None
        ``None`` when no sample has metadata.

    Raises
    ------
    ValueError
        If only some samples have metadata.
    """
    missing = sum(meta is None for meta in norm_metas)
    if missing == len(norm_metas):
        return None
    if missing:
        raise ValueError(
            f"{missing} of {len(norm_metas)} samples have no normalization metadata while the others do; "
            "write it for every FOV (viscy preprocess) or for none."
        )
    return collate_meta_tensor(list(norm_metas))


def _scatter_channels(
    channel_names: Sequence[str], patch: Tensor, norm_meta: Sequence[NormMeta | None] | NormMeta | None
) -> dict[str, Tensor | NormMeta]:
    """Split a batched ``(B, C, Z, Y, X)`` patch into ``{channel: (B, 1, Z, Y, X)}``."""
    if len(channel_names) != patch.shape[1]:
        raise ValueError(f"{len(channel_names)} channel names {list(channel_names)} for {patch.shape[1]} channels.")
    channels: dict[str, Any] = {name: patch[:, c : c + 1] for c, name in enumerate(channel_names)}
    if isinstance(norm_meta, Sequence):
        norm_meta = collate_norm_meta(norm_meta)
    if norm_meta is not None:
        channels["norm_meta"] = norm_meta
    return channels


def _gather_channels(channels: dict[str, Tensor | NormMeta]) -> Tensor:
    """Concatenate ``{channel: (B, 1, ...)}`` along dim 1, dropping ``norm_meta``."""
    return torch.cat([value for key, value in channels.items() if key != "norm_meta"], dim=1)


def transform_channel_wise(
    transform: DictTransform,
    channel_names: Sequence[str],
    patch: Tensor,
    norm_meta: Sequence[NormMeta | None] | NormMeta | None,
) -> Tensor:
    """Apply a dictionary transform to a batched ``(B, C, Z, Y, X)`` patch, one key per channel.

    The patch is split into ``{channel_names[c]: patch[:, c:c+1]}`` (plus ``"norm_meta"``, the
    per-sample metadata collated by :func:`collate_norm_meta`), transformed, and concatenated
    back along the channel dimension.

    Parameters
    ----------
    transform : DictTransform
        Transform over the channel keys (e.g. a MONAI ``Compose`` of batched transforms).
    channel_names : Sequence[str]
        Key of each channel, in order.
    patch : Tensor
        ``(B, C, Z, Y, X)`` batch.
    norm_meta : sequence of NormMeta or None, NormMeta or None
        Per-sample metadata keyed by the channel keys, already collated, or None.

    Returns
    -------
    Tensor
        The transformed batch.

    Raises
    ------
    ValueError
        If the number of names differs from the number of channels, or only some samples have
        metadata.
    """
    return _gather_channels(transform(_scatter_channels(channel_names, patch, norm_meta)))
