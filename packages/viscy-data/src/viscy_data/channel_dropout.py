"""Per-sample, per-channel dropout of whole channels of a ``(B, C, Z, Y, X)`` batch."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import Self

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["ChannelDropout"]

_MAX_SEED = 2**32  # MONAI's MAX_SEED: seeds are taken modulo it, as MONAI's Randomizable does


class ChannelDropout(nn.Module):
    """Zero each listed channel of each sample independently with probability ``p``, in training mode.

    Meant for the GPU augmentation chain, after the batch is on its device (for example in a
    DataModule's ``on_after_batch_transfer``). The decisions are drawn on a CPU ``torch.Generator`` that
    the module owns, so a seed gives the same masks on any device; the mask then moves to the batch's
    device. ``set_random_state`` follows MONAI's ``Randomizable`` protocol (what ``Compose`` and the
    viscy transforms use), so the module can be reseeded per rank and epoch like the transforms.

    A module held by a DataModule is not switched by Lightning between training and validation: its
    owner calls ``train()`` / ``eval()``. In eval mode the input is returned as is.

    Parameters
    ----------
    channels : Sequence[int]
        Indices, along the channel axis C, of the channels that may be dropped (distinct, >= 0). The
        other channels are never changed.
    p : float
        Probability in [0, 1] of dropping each listed channel of each sample.
    seed : int | None
        Seed of the module's generator. None: drawn from torch's global generator, so that
        ``torch.manual_seed`` (or Lightning's ``seed_everything``) before construction makes it
        reproducible.

    Raises
    ------
    ValueError
        If a channel index is negative, not an integer or repeated, or ``p`` is outside [0, 1].

    Examples
    --------
    >>> import torch
    >>> dropout = ChannelDropout(channels=[1], p=1.0, seed=0)
    >>> out = dropout(torch.ones(2, 2, 1, 4, 4))
    >>> out[:, 0].sum().item(), out[:, 1].sum().item()
    (32.0, 0.0)
    """

    def __init__(self, channels: Sequence[int], p: float = 0.5, seed: int | None = None) -> None:
        super().__init__()
        channels = list(channels)
        bad = [c for c in channels if isinstance(c, bool) or not isinstance(c, Integral) or c < 0]
        if bad:
            raise ValueError(f"channels must be non-negative integer indices, got {bad} in {channels}")
        if len(set(channels)) != len(channels):
            raise ValueError(f"channels must be distinct, got {channels}")
        if isinstance(p, bool) or not isinstance(p, Real) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        self.channels = [int(c) for c in channels]
        self.p = float(p)
        self._generator = torch.Generator()
        self._generator.manual_seed(int(torch.randint(_MAX_SEED, (1,)).item()) if seed is None else seed % _MAX_SEED)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> Self:
        """Reseed the module's generator (MONAI's ``Randomizable.set_random_state`` protocol).

        Parameters
        ----------
        seed : int | None
            Integer seed, taken modulo 2**32. The same seed gives the same masks.
        state : numpy.random.RandomState | None
            Used when ``seed`` is None: the seed is drawn from it. With neither, the generator is
            seeded from OS entropy.

        Returns
        -------
        Self
            The module itself.

        Raises
        ------
        TypeError
            If ``state`` is not a ``numpy.random.RandomState``.
        """
        if seed is not None:
            self._generator.manual_seed(int(seed) % _MAX_SEED)
        elif state is not None:
            if not isinstance(state, np.random.RandomState):
                raise TypeError(f"state must be a numpy.random.RandomState, got {type(state).__name__}")
            self._generator.manual_seed(int(state.randint(_MAX_SEED)))
        else:
            self._generator.seed()
        return self

    def forward(self, x: Tensor) -> Tensor:
        """Drop channels of a batch.

        Parameters
        ----------
        x : Tensor
            Batch of shape ``(B, C, Z, Y, X)`` with ``C`` greater than every listed channel.

        Returns
        -------
        Tensor
            ``x`` itself in eval mode, when ``p == 0`` or no channel is listed; otherwise a new tensor
            of the same shape, dtype and device, equal to ``x`` except for the dropped (sample, channel)
            pairs, which are exactly 0.

        Raises
        ------
        ValueError
            If ``x`` is not 5-D or lacks a listed channel.
        """
        if x.ndim != 5:
            raise ValueError(f"ChannelDropout expects a (B, C, Z, Y, X) tensor, got shape {tuple(x.shape)}")
        if self.channels and max(self.channels) >= x.shape[1]:
            raise ValueError(
                f"ChannelDropout drops channels {self.channels}, but the batch of shape {tuple(x.shape)} "
                f"has C={x.shape[1]} channels"
            )
        if not self.training or self.p == 0.0 or not self.channels:
            return x
        dropped = torch.rand(x.shape[0], len(self.channels), generator=self._generator, dtype=torch.float64) < self.p
        mask = torch.zeros(x.shape[0], x.shape[1], dtype=torch.bool)
        mask[:, self.channels] = dropped
        return x.masked_fill(mask.to(x.device, non_blocking=True)[:, :, None, None, None], 0)

    def extra_repr(self) -> str:
        """Channels and probability, for ``repr``."""
        return f"channels={self.channels}, p={self.p}"
