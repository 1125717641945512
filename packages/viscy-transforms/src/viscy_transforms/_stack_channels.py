"""Stacking of per-channel entries of a sample into multi-channel entries."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from monai.transforms import Transform

from viscy_transforms._typing import ChannelMap

__all__ = ["StackChannelsd"]


def _channel_names(value: str | Sequence[str], output: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names or not all(isinstance(name, str) for name in names):
        raise ValueError(f"channel_map[{output!r}] must be a channel name or a non-empty list of names, got {value!r}")
    return names


class StackChannelsd(Transform):
    """Concatenate per-channel entries of a sample along the channel dim (dim 0).

    ``StackChannelsd({"source": ["Phase3D"], "target": ["Nuclei", "Membrane"]})`` turns a sample
    with ``Phase3D``, ``Nuclei`` and ``Membrane`` entries, each (1, Z, Y, X), into one with
    ``source`` (1, Z, Y, X) and ``target`` (2, Z, Y, X). The stacked channel entries are removed;
    every other entry (``index``, ``norm_meta``...) is kept.

    Parameters
    ----------
    channel_map : ChannelMap
        Output key to the channel name(s) stacked into it; a bare string is one channel name.
    """

    runs_on_batches: ClassVar[bool] = False

    def __init__(self, channel_map: ChannelMap) -> None:
        if not isinstance(channel_map, Mapping) or not channel_map:
            raise ValueError(
                f"channel_map must be a non-empty mapping of output key to channel names, got {channel_map!r}"
            )
        self.channel_map = {output: _channel_names(value, output) for output, value in channel_map.items()}

    def __call__(self, sample: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Stack the channels; returns a new dict.

        Parameters
        ----------
        sample : Mapping[Hashable, Any]
            Sample with one entry per channel name.

        Returns
        -------
        dict[Hashable, Any]
            The sample with the channel entries replaced by the stacked outputs.
        """
        used = {name for names in self.channel_map.values() for name in names}
        missing = sorted(used - set(sample))
        if missing:
            raise KeyError(f"channel(s) {missing} not found in the sample; entries present: {list(sample)}")
        out = {key: value for key, value in sample.items() if key not in used}
        for output, names in self.channel_map.items():
            out[output] = torch.cat([sample[name] for name in names], dim=0)
        return out
