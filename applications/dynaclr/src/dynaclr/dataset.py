"""``MultiExperimentTripletDataset``: batched anchor and positive patches of a ``MultiExperimentIndex``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dynaclr.experiment import MISSING_CHANNEL
from dynaclr.index import MultiExperimentIndex
from dynaclr.tau_sampling import tau_probabilities
from viscy_data import INDEX_COLUMNS
from viscy_data.norm_meta_table import NormMetaTable
from viscy_data.patch_reader import PatchLocations, PatchReader

__all__ = ["PREDICT_INDEX_COLUMNS", "MultiExperimentTripletDataset"]

PREDICT_INDEX_COLUMNS = ("experiment", "condition", "hours_post_infection", *INDEX_COLUMNS)
"""Columns of each sample's ``index`` entry in predict mode (``z`` when the tracks have it)."""


class MultiExperimentTripletDataset(Dataset):
    """Anchors of a :class:`~dynaclr.index.MultiExperimentIndex` with positives ``tau`` frames later.

    Only the batched ``__getitems__(indices)`` reads (torch's fetcher calls it with a whole batch;
    ``__getitem__`` reads a batch of one), through viscy-data's read path: all patches of a batch go
    out as one tensorstore batch into one array per key, taken from a pool reused once no batch uses
    them (:class:`viscy_data.patch_reader.PatchReader`), and the batch's normalization metadata is
    collated on the host (:class:`viscy_data.norm_meta_table.NormMetaTable`).

    Parameters
    ----------
    index : MultiExperimentIndex
        The cells.
    fit : bool
        True: anchors are ``index.valid_anchors`` and batches hold ``anchor`` and ``positive``.
        False (predict): every row of ``index.tracks``, in order, with an ``index`` of tracking columns.
    tau_range_hours : tuple[float, float]
        Anchor-to-positive offsets in hours, converted to frames per experiment.
    tau_decay_rate : float
        Decay of the offsets' probabilities (:func:`dynaclr.tau_sampling.tau_probabilities`).
    return_negative : bool
        Also return ``negative``: per anchor, an observation of another lineage of the same
        experiment (for triplet losses; NT-Xent losses use the batch's other samples instead).
    cache_pool_bytes : int
        Tensorstore chunk cache size in bytes.
    seed : int
        Seed of the positive and negative draws.
    read_yx_patch_size : tuple[int, int], optional
        YX size actually read around each (border-clamped) patch centre, when smaller than
        ``index.yx_patch_size``: the region the augmentations can sample
        (:func:`viscy_data.after_transfer.smallest_read_yx`). Default: ``index.yx_patch_size``.
    pin_memory : bool
        Read into page-locked host memory (when CUDA is available), so that pinning the batch costs no
        copy. Batches are read into arrays reused once no batch uses them
        (:class:`viscy_data.patch_buffers.PatchBuffers`).

    Notes
    -----
    A positive is drawn per anchor: ``tau`` from the decaying distribution restricted to the offsets
    at which the anchor's lineage has an observation, then one of those observations uniformly
    (a daughter after a division, the same track otherwise). The draws of a batch use
    ``numpy.random.default_rng((seed, epoch, rank, *indices))``: the same batch in the same epoch gets
    the same positives whatever thread or process reads it, and another epoch gets new ones.
    ``epoch`` and ``rank`` are set by the DataModule.

    Channels follow ``index.registry.channel_maps``; a channel an experiment lacks
    (``training_channels="all"``) is zero-filled, with neutral normalization statistics (location 0,
    scale 1). Normalization metadata holds each sample's statistics at its time point, keyed by the
    model channel labels (``registry.active_channels``) that the transforms' ``keys`` use.
    """

    def __init__(
        self,
        index: MultiExperimentIndex,
        fit: bool = True,
        tau_range_hours: Sequence[float] = (0.5, 2.0),
        tau_decay_rate: float = 2.0,
        return_negative: bool = False,
        cache_pool_bytes: int = 0,
        seed: int = 0,
        read_yx_patch_size: Sequence[int] | None = None,
        pin_memory: bool = False,
    ) -> None:
        self.index = index
        self.read_yx_patch_size = tuple(index.yx_patch_size if read_yx_patch_size is None else read_yx_patch_size)
        if any(read > size for read, size in zip(self.read_yx_patch_size, index.yx_patch_size, strict=True)):
            raise ValueError(
                f"read_yx_patch_size {self.read_yx_patch_size} exceeds the index's yx_patch_size {index.yx_patch_size}."
            )
        self.fit = fit
        self.tau_range_hours = (float(tau_range_hours[0]), float(tau_range_hours[1]))
        self.tau_decay_rate = float(tau_decay_rate)
        self.return_negative = return_negative
        self.cache_pool_bytes = int(cache_pool_bytes)
        self.seed = int(seed)
        self.epoch = 0
        self.rank = 0
        self.channel_labels = list(index.registry.active_channels)
        self._index_rows()
        self._index_reads(pin_memory)
        if fit:
            self._index_offsets()

    def _index_rows(self) -> None:
        tracks = self.index.tracks
        self._rows = self.index.anchor_rows if self.fit else np.arange(len(tracks))
        self._row_fov = tracks["fov_index"].to_numpy(dtype=np.int64)
        self._row_t = tracks["t"].to_numpy(dtype=np.int64)
        self._row_y = tracks["y_clamp"].to_numpy(dtype=np.int64)
        self._row_x = tracks["x_clamp"].to_numpy(dtype=np.int64)
        self._row_experiment = tracks["experiment"].cat.codes.to_numpy(dtype=np.int64)
        lineage, shifted_t = self.index.lineage_time_keys()
        self._row_lineage = lineage
        self._row_keys = lineage * self.index.time_stride + shifted_t
        self._key_order = np.argsort(self._row_keys, kind="stable")
        self._sorted_keys = self._row_keys[self._key_order]
        groups = self.index.experiment_groups
        self._experiment_pools = [groups.get(name, np.empty(0, dtype=np.int64)) for name in self.index.registry.names]

    def _index_reads(self, pin_memory: bool) -> None:
        """Build the patch reader and the normalization table from each FOV's channel map."""
        registry = self.index.registry
        channel_maps, channel_sources = [], []
        for fov in self.index.fovs:
            experiment = registry.experiments[registry.names.index(fov.experiment)]
            mapping = registry.channel_maps[experiment.name]
            zarr_channels = [mapping[channel] for channel in range(registry.num_source_channels)]
            channel_maps.append(zarr_channels)
            channel_sources.append(
                [None if zarr == MISSING_CHANNEL else experiment.channel_names[zarr] for zarr in zarr_channels]
            )
        self._reader = PatchReader(
            [position["0"] for position in self.index.positions],
            channel_maps,
            self.index.z_range,
            self.read_yx_patch_size,
            cache_pool_bytes=self.cache_pool_bytes,
            pin_memory=pin_memory,
        )
        self._norm_meta = NormMetaTable(
            self.index.positions,
            [fov.fov_name for fov in self.index.fovs],
            channel_sources,
            self.channel_labels,
            self._row_fov,
            self._row_t,
        )

    def _index_offsets(self) -> None:
        """Offsets in frames and their probabilities, per experiment."""
        registry = self.index.registry
        self._taus = []
        self._tau_probabilities = []
        for name in registry.names:
            taus, probabilities = tau_probabilities(
                *registry.tau_range_frames(name, self.tau_range_hours), self.tau_decay_rate
            )
            self._taus.append(taus)
            self._tau_probabilities.append(probabilities)

    def set_epoch(self, epoch: int) -> None:
        """Seed the next batches' draws with ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        """Read a batch.

        Parameters
        ----------
        indices : Sequence[int]
            Positions into ``index.valid_anchors`` (fit) or ``index.tracks`` (predict).

        Returns
        -------
        dict
            ``anchor`` ``(B, C, Z, Y, X)`` and ``anchor_norm_meta`` (the batch's statistics,
            ``{channel: {level: {statistic: (B,) Tensor}}}``, or None when no FOV has metadata); in
            fit mode ``positive`` / ``positive_norm_meta`` (and ``negative`` / ``negative_norm_meta``
            with ``return_negative``) and ``lineage``, the ``(B,)`` int64 lineage code of each anchor
            (NT-Xent losses do not take a row of the anchor's lineage as its negative); in predict mode
            ``index``, a list of dicts of :data:`PREDICT_INDEX_COLUMNS` with the original ``y``, ``x``.

        Raises
        ------
        viscy_data.read_errors.ArrayReadError
            If a read fails; the message names the store, FOV and time point.
        """
        positions = np.asarray(indices, dtype=np.int64)
        anchor_rows = self._rows[positions]
        row_sets = {"anchor": anchor_rows}
        if self.fit:
            rng = np.random.default_rng([self.seed, self.epoch, self.rank, *positions.tolist()])
            row_sets["positive"] = self._draw_positives(anchor_rows, rng)
            if self.return_negative:
                row_sets["negative"] = self._draw_negatives(anchor_rows, rng)
        locations = {
            key: PatchLocations(self._row_fov[rows], self._row_t[rows], self._row_y[rows], self._row_x[rows])
            for key, rows in row_sets.items()
        }
        batch: dict[str, Any] = {}
        for key, patches in zip(locations, self._reader.read(list(locations.values())), strict=True):
            batch[key] = patches
            batch[f"{key}_norm_meta"] = self._norm_meta.collate(locations[key].fov, locations[key].t)
        if self.fit:
            batch["lineage"] = torch.from_numpy(self._row_lineage[anchor_rows])
        else:
            batch["index"] = self._tracking_index(anchor_rows)
        return batch

    def _draw_positives(self, anchor_rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One same-lineage row ``tau`` frames after each anchor."""
        positives = np.empty(len(anchor_rows), dtype=np.int64)
        experiments = self._row_experiment[anchor_rows]
        for code in np.unique(experiments):
            members = np.flatnonzero(experiments == code)
            rows = anchor_rows[members]
            taus, probabilities = self._taus[code], self._tau_probabilities[code]
            targets = self._row_keys[rows, None] + taus[None, :]
            low = np.searchsorted(self._sorted_keys, targets, side="left")
            high = np.searchsorted(self._sorted_keys, targets, side="right")
            weights = probabilities[None, :] * (high > low)
            cumulative = np.cumsum(weights, axis=1)
            totals = cumulative[:, -1]
            if not totals.all():
                self._raise_no_positive(rows[np.flatnonzero(totals == 0)[0]])
            # the first offset whose cumulative weight exceeds u * total (u in [0, 1)) has a positive weight
            choice = (cumulative <= rng.random(len(rows))[:, None] * totals[:, None]).sum(axis=1)
            picked = np.arange(len(rows))
            start, stop = low[picked, choice], high[picked, choice]
            offsets = (rng.random(len(rows)) * (stop - start)).astype(np.int64)
            positives[members] = self._key_order[start + offsets]
        return positives

    def _raise_no_positive(self, row: int) -> None:
        cell = self.index.tracks.iloc[row]
        raise RuntimeError(
            f"No positive for the anchor of experiment '{cell['experiment']}', FOV {cell['fov_name']}, "
            f"track {cell['track_id']}, t={cell['t']}: its lineage has no observation within "
            f"tau_range_hours={self.tau_range_hours}. Anchors must come from index.valid_anchors with the same "
            "tau range."
        )

    def _draw_negatives(self, anchor_rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One row of another lineage of the same experiment per anchor."""
        names = self.index.registry.names
        negatives = np.empty(len(anchor_rows), dtype=np.int64)
        experiments = self._row_experiment[anchor_rows]
        for code in np.unique(experiments):
            members = np.flatnonzero(experiments == code)
            pool = self._experiment_pools[code]
            lineages = self._row_lineage[pool]
            if np.unique(lineages).size < 2:
                raise ValueError(f"Experiment '{names[code]}' has one lineage; negatives need at least two.")
            drawn = pool[rng.integers(0, len(pool), size=len(members))]
            for _ in range(100):
                same = self._row_lineage[drawn] == self._row_lineage[anchor_rows[members]]
                if not same.any():
                    break
                drawn[same] = pool[rng.integers(0, len(pool), size=int(same.sum()))]
            negatives[members] = drawn
        return negatives

    def _tracking_index(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """Tracking columns of each row as Python scalars (original ``y`` and ``x``)."""
        tracks = self.index.tracks
        columns = [column for column in PREDICT_INDEX_COLUMNS if column in tracks.columns]
        table = tracks.iloc[rows][columns]
        table = table.astype({column: object for column in ("experiment", "condition")})
        return table.to_dict(orient="records")
