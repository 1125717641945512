"""Normalization statistics of every cell a dataset reads, looked up per batch as one tensor per statistic."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from viscy_data._typing import NormMeta
from viscy_data.normalization import NORMALIZATION_FIELD, TIMEPOINT_LEVEL, ZattrsNode

__all__ = ["SCALE_STATISTICS", "NormMetaTable"]

_logger = logging.getLogger(__name__)

SCALE_STATISTICS = frozenset({"std", "iqr", "p99_p1", "p95_p5"})
"""Statistics used as divisors: 1 for a channel a FOV lacks (its zeros stay zeros), the others 0."""

_Key = tuple[str, str]
"""(level, statistic) of one channel."""


class NormMetaTable:
    """The normalization statistics (written by ``viscy preprocess``) of a dataset's FOVs, as arrays.

    Built once from the FOVs' ``.zattrs``; :meth:`collate` then gives a batch its metadata as
    ``{channel: {level: {statistic: (B,) float32 Tensor}}}`` by indexing those arrays: the form the
    normalization transforms read, collated on the host, one tensor per statistic (no per-sample
    dicts to copy to the device one scalar at a time). ``timepoint_statistics`` holds each sample's
    own time point.

    Only what every FOV the dataset reads has is kept: a (channel, level, statistic) missing in
    some FOV (or at some time point it reads) is left out of every batch, with a warning naming
    it, so that batches do not depend on which cells they hold. A channel that a FOV lacks
    altogether (``None`` in its sources: an experiment without that channel) gets neutral
    statistics (location 0, scale 1, see :data:`SCALE_STATISTICS`).

    Parameters
    ----------
    nodes : Sequence[ZattrsNode]
        Each FOV (an iohub ``Position``, or anything with ``zattrs``).
    fov_names : Sequence[str]
        Name of each FOV, for messages.
    channel_sources : Sequence[Sequence[str | None]]
        Per FOV, the channel name in its metadata of each output channel, or None where it lacks it.
    channel_labels : Sequence[str]
        The output channels' names, keying the collated metadata.
    fov : numpy.ndarray
        FOV index of every row the dataset can read.
    t : numpy.ndarray
        Time point of every row the dataset can read.

    Raises
    ------
    ValueError
        If some of the FOVs read have normalization metadata and others have none.
    """

    def __init__(
        self,
        nodes: Sequence[ZattrsNode],
        fov_names: Sequence[str],
        channel_sources: Sequence[Sequence[str | None]],
        channel_labels: Sequence[str],
        fov: np.ndarray,
        t: np.ndarray,
    ) -> None:
        self.channel_labels = list(channel_labels)
        used = np.unique(fov).tolist()
        metadata = {f: nodes[f].zattrs.get(NORMALIZATION_FIELD) or None for f in used}
        without = [fov_names[f] for f in used if metadata[f] is None]
        self._columns: dict[str, dict[_Key, np.ndarray]] | None = None
        if len(without) == len(used):
            return
        if without:
            raise ValueError(
                f"{len(without)} of {len(used)} FOVs have no normalization metadata ({', '.join(without[:5])}"
                f"{', ...' if len(without) > 5 else ''}) while the others do; write it for every FOV "
                "(viscy preprocess) or for none."
            )
        times = {f: np.unique(t[fov == f]).tolist() for f in used}
        n_times = int(t.max()) + 1
        keys = self._common_keys(metadata, times, channel_sources, fov_names)
        self._columns = {}
        for label_index, label in enumerate(self.channel_labels):
            columns = {}
            for level, statistic in keys[label]:
                shape = (len(nodes), n_times) if level == TIMEPOINT_LEVEL else (len(nodes),)
                column = np.full(shape, np.nan, dtype=np.float32)
                for f in used:
                    source = channel_sources[f][label_index]
                    if source is None:
                        column[f] = 1.0 if statistic in SCALE_STATISTICS else 0.0
                    elif level == TIMEPOINT_LEVEL:
                        by_time = metadata[f][source][level]
                        for time in times[f]:
                            column[f, time] = by_time[str(time)][statistic]
                    else:
                        column[f] = metadata[f][source][level][statistic]
                columns[(level, statistic)] = column
            self._columns[label] = columns

    def _common_keys(
        self,
        metadata: dict[int, dict],
        times: dict[int, list[int]],
        channel_sources: Sequence[Sequence[str | None]],
        fov_names: Sequence[str],
    ) -> dict[str, list[_Key]]:
        """Per output channel, the (level, statistic) pairs every FOV providing it has at every time point it reads."""
        found: dict[str, dict[int, set[_Key]]] = {label: {} for label in self.channel_labels}
        for f, meta in metadata.items():
            for label, source in zip(self.channel_labels, channel_sources[f], strict=True):
                if source is not None:
                    found[label][f] = _keys_at(meta.get(source) or {}, times[f])
        common: dict[str, list[_Key]] = {}
        lacking: dict[tuple[str, _Key], list[str]] = {}
        for label, keys_of in found.items():
            every = set.intersection(*keys_of.values()) if keys_of else set()
            common[label] = sorted(every)
            for key in sorted(set().union(*keys_of.values()) - every):
                lacking[(label, key)] = [fov_names[f] for f, keys in keys_of.items() if key not in keys]
        provided = [set(common[label]) for label in self.channel_labels if found[label]]
        shared = sorted(set.intersection(*provided)) if provided else []
        for label in self.channel_labels:
            if not found[label]:  # no FOV has this channel: neutral statistics of the keys the others share
                common[label] = shared
        if lacking:
            listed = "; ".join(
                f"{label!r} {level}/{statistic} (missing in {len(names)} FOVs, e.g. {names[0]})"
                for (label, (level, statistic)), names in list(lacking.items())[:5]
            )
            _logger.warning(
                "Normalization statistics that some FOVs (or some of their time points) lack are left out "
                "of every batch: %s%s.",
                listed,
                f" and {len(lacking) - 5} more" if len(lacking) > 5 else "",
            )
        return common

    def collate(self, fov: np.ndarray, t: np.ndarray) -> NormMeta | None:
        """Return the metadata of a batch of cells.

        Parameters
        ----------
        fov : numpy.ndarray
            FOV index of each cell (rows the table was built with).
        t : numpy.ndarray
            Time point of each cell.

        Returns
        -------
        NormMeta or None
            ``{channel: {level: {statistic: (B,) float32 Tensor}}}``; None when the FOVs have no
            normalization metadata.
        """
        if self._columns is None:
            return None
        collated: NormMeta = {}
        for label, columns in self._columns.items():
            levels: dict = {}
            for (level, statistic), column in columns.items():
                values = column[fov, t] if level == TIMEPOINT_LEVEL else column[fov]
                levels.setdefault(level, {})[statistic] = torch.from_numpy(values)
            collated[label] = levels
        return collated


def _keys_at(levels: dict, times: list[int]) -> set[_Key]:
    """Return a channel's (level, statistic) pairs; time-point ones only if every time in ``times`` has them."""
    keys = {(level, statistic) for level, stats in levels.items() if level != TIMEPOINT_LEVEL for statistic in stats}
    by_time = levels.get(TIMEPOINT_LEVEL)
    if by_time:
        at_times = [set(by_time.get(str(time), {})) for time in times]
        keys |= {(TIMEPOINT_LEVEL, statistic) for statistic in set.intersection(*at_times)} if at_times else set()
    return keys
