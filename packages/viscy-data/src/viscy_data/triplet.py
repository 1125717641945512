"""Contrastive triplets of tracked cells: anchors, temporal positives and negatives.

Needs the ``[triplet]`` extra (tensorstore) for patch reads.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from iohub.ngff import Position
from monai.data import set_track_meta
from monai.data.utils import no_collation
from monai.transforms import MapTransform
from torch import Tensor
from torch.utils.data import Dataset

from viscy_data._optional import import_optional
from viscy_data._typing import INDEX_COLUMNS, DictTransform, TripletSample
from viscy_data._utils import (
    _channel_indices,
    _check_z_range,
    _require_columns,
    _validate_store_channels,
)
from viscy_data.after_transfer import after_transfer_pipeline, smallest_read_yx
from viscy_data.channel_wise import transform_channel_wise
from viscy_data.compatibility import accept_default_only
from viscy_data.norm_meta_table import NormMetaTable
from viscy_data.ome_compat import fov_name, open_ome_zarr
from viscy_data.patch_reader import PatchLocations, PatchReader
from viscy_data.plate import PlateDataModule
from viscy_data.seeding import BatchSeeder
from viscy_data.select import select_positions
from viscy_data.thread_loader import ThreadedDataLoader
from viscy_data.tracks import TRACK_REQUIRED_COLUMNS, read_tracks_csv

__all__ = ["TripletDataModule", "TripletDataset"]

_logger = logging.getLogger(__name__)

_OPTIONAL_INDEX_COLUMNS = ("z", "y", "x")


class TripletDataset(Dataset):
    """Patches of tracked cells for contrastive learning, read in batches with tensorstore.

    Use through ``__getitems__`` (a DataLoader with an identity collate does): one batched
    read per batch (:class:`~viscy_data.patch_reader.PatchReader`), with the batch's
    normalization metadata collated on the host (:class:`~viscy_data.norm_meta_table.NormMetaTable`).

    Parameters
    ----------
    positions : list[Position]
        FOVs sharing one channel order.
    tracks_tables : list[pd.DataFrame]
        One Ultrack tracks table per position (``track_id, t, id, parent_track_id,
        parent_id, [z], y, x``). The tables are not modified.
    channel_names : list[str]
        Channels to read.
    initial_yx_patch_size : tuple[int, int]
        YX size of the patches read around each cell centroid.
    z_range : slice
        Z slices to read.
    fit : bool
        Return positives (and negatives); otherwise return the tracking ``index``.
    predict_cells : bool
        Keep only the cells given by ``include_fov_names`` and ``include_track_ids``.
    include_fov_names : list[str], optional
        FOV of each cell kept with ``predict_cells``.
    include_track_ids : list[int], optional
        Track of each cell kept with ``predict_cells``.
    time_interval : "any" or int
        Positives are the same cell ``time_interval`` frames later (anchors without one are
        left out); with ``"any"`` a positive is a copy of its anchor, augmented differently.
    return_negative : bool
        Return a negative (another track) per anchor when fitting.
    cache_pool_bytes : int
        Tensorstore chunk cache size; 0 disables it.
    seed : int
        Seed of the negative sampling; a batch of the same indices gets the same negatives.
    read_yx_patch_size : tuple[int, int], optional
        YX size actually read, centred on the same point, when smaller than
        ``initial_yx_patch_size`` (which still decides which cells are far enough from the
        border): the region the augmentations can sample
        (:func:`viscy_data.after_transfer.smallest_read_yx`). Default: ``initial_yx_patch_size``.
    pin_memory : bool
        Read into page-locked host memory (when CUDA is available), so that pinning the batch
        costs no copy. Batches are read into arrays reused once no batch uses them
        (:class:`~viscy_data.patch_buffers.PatchBuffers`).
    """

    def __init__(
        self,
        positions: list[Position],
        tracks_tables: list[pd.DataFrame],
        channel_names: list[str],
        initial_yx_patch_size: tuple[int, int],
        z_range: slice,
        fit: bool = True,
        predict_cells: bool = False,
        include_fov_names: list[str] | None = None,
        include_track_ids: list[int] | None = None,
        time_interval: Literal["any"] | int = "any",
        return_negative: bool = True,
        cache_pool_bytes: int = 0,
        seed: int = 0,
        read_yx_patch_size: tuple[int, int] | None = None,
        pin_memory: bool = False,
    ) -> None:
        import_optional("tensorstore", extra="triplet", feature="TripletDataset")
        if len(positions) != len(tracks_tables):
            raise ValueError(f"{len(positions)} positions but {len(tracks_tables)} tracks tables.")
        if not positions:
            raise ValueError("TripletDataset needs at least one position.")
        if time_interval != "any" and (not isinstance(time_interval, int) or time_interval < 0):
            raise ValueError(f"time_interval must be 'any' or a non-negative int, got {time_interval!r}.")
        self.positions = positions
        self.channel_names = list(channel_names)
        self.channel_indices = _channel_indices(positions[0].channel_names, self.channel_names)
        self.z_range = z_range
        self.fit = fit
        self.yx_patch_size = tuple(initial_yx_patch_size)
        self.read_yx_patch_size = self.yx_patch_size if read_yx_patch_size is None else tuple(read_yx_patch_size)
        if any(read > size for read, size in zip(self.read_yx_patch_size, self.yx_patch_size, strict=True)):
            raise ValueError(
                f"read_yx_patch_size {self.read_yx_patch_size} exceeds initial_yx_patch_size {self.yx_patch_size}."
            )
        self.predict_cells = predict_cells
        self.include_fov_names = include_fov_names
        self.include_track_ids = include_track_ids
        self.time_interval = time_interval
        self.return_negative = return_negative
        self.cache_pool_bytes = cache_pool_bytes
        self.seed = seed
        self._reader = PatchReader(
            [position["0"] for position in positions],
            [self.channel_indices] * len(positions),
            z_range,
            self.read_yx_patch_size,
            cache_pool_bytes=cache_pool_bytes,
            pin_memory=pin_memory,
        )
        self.tracks = self._filter_tracks(tracks_tables)
        if predict_cells:
            self.tracks = self._select_cells(self.tracks)
        self.valid_anchors = self._filter_anchors(self.tracks)
        if self.valid_anchors.empty:
            _logger.warning("TripletDataset of %d FOVs has no valid anchors.", len(positions))
        self._index_rows()

    def _filter_tracks(self, tracks_tables: list[pd.DataFrame]) -> pd.DataFrame:
        """Concatenate the tables, keeping cells whose patch lies inside their image (the others are counted)."""
        z_start, z_stop = self.z_range.start or 0, self.z_range.stop
        half_y, half_x = self.yx_patch_size[0] // 2, self.yx_patch_size[1] // 2
        filtered = []
        n_border = n_outside_movie = 0
        for position_index, (position, table) in enumerate(zip(self.positions, tracks_tables, strict=True)):
            name = fov_name(position)
            _require_columns(table.columns, TRACK_REQUIRED_COLUMNS, f"Tracks table of FOV {name}")
            n_frames, _, n_slices, height, width = position["0"].shape
            _check_z_range(z_start, z_stop, n_slices, f"FOV {name}")
            inside_yx = (
                table["y"].gt(half_y)
                & table["y"].lt(height - half_y)
                & table["x"].gt(half_x)
                & table["x"].lt(width - half_x)
            )
            inside = inside_yx & table["t"].between(0, n_frames - 1)
            n_border += int((~inside_yx).sum())
            n_outside_movie += int((inside_yx & ~inside).sum())
            kept = table[inside].copy()
            kept["fov_name"] = name
            kept["global_track_id"] = name + "_" + kept["track_id"].astype(str)
            kept["position"] = [position] * len(kept)
            kept["_position_index"] = position_index
            filtered.append(kept)
        tracks = pd.concat(filtered, ignore_index=True)
        if n_border or n_outside_movie:
            _logger.warning(
                "Dropped %d of %d tracked cells (kept %d): %d whose %s patch crosses the image border, "
                "%d whose t is outside the frames of their FOV.",
                n_border + n_outside_movie,
                sum(len(table) for table in tracks_tables),
                len(tracks),
                n_border,
                self.yx_patch_size,
                n_outside_movie,
            )
        return tracks

    def _select_cells(self, tracks: pd.DataFrame) -> pd.DataFrame:
        """Keep the (FOV, track) pairs of ``include_fov_names`` and ``include_track_ids``."""
        fovs, track_ids = self.include_fov_names or [], self.include_track_ids or []
        if len(fovs) != len(track_ids):
            raise ValueError(f"{len(fovs)} include_fov_names but {len(track_ids)} include_track_ids.")
        wanted = pd.MultiIndex.from_arrays([fovs, track_ids], names=["fov_name", "track_id"])
        keys = pd.MultiIndex.from_frame(tracks[["fov_name", "track_id"]])
        selected = tracks[keys.isin(wanted)].reset_index(drop=True)
        n_missing = int((~wanted.isin(keys)).sum())
        if n_missing:
            _logger.warning(
                "%d of %d cells of include_fov_names/include_track_ids have no tracked rows (no such track, "
                "or all its rows dropped at the image border); predicting %d rows of the other %d.",
                n_missing,
                len(wanted),
                len(selected),
                len(wanted) - n_missing,
            )
        _logger.info("Predicting %d rows of %d selected cells.", len(selected), len(wanted))
        return selected

    def _filter_anchors(self, tracks: pd.DataFrame) -> pd.DataFrame:
        """Return the rows that have a positive ``time_interval`` frames later in their track (the others counted)."""
        if self.time_interval == "any" or not self.fit:
            return tracks
        keys = pd.MultiIndex.from_arrays([tracks["global_track_id"], tracks["t"]])
        later = pd.MultiIndex.from_arrays([tracks["global_track_id"], tracks["t"] + self.time_interval])
        anchors = tracks[later.isin(keys)]
        if len(anchors) < len(tracks):
            _logger.warning(
                "Dropped %d of %d anchors (kept %d) without a positive: their track has no row at "
                "t + time_interval (t + %d).",
                len(tracks) - len(anchors),
                len(tracks),
                len(anchors),
                self.time_interval,
            )
        return anchors

    def _index_rows(self) -> None:
        """Precompute per-row arrays so that a batch needs no pandas work but one ``take``."""
        tracks = self.tracks
        self._row_position = tracks["_position_index"].to_numpy()
        self._row_t = tracks["t"].to_numpy(dtype=np.int64)
        self._row_y = tracks["y"].to_numpy().astype(np.int64)
        self._row_x = tracks["x"].to_numpy().astype(np.int64)
        self._row_track = pd.factorize(tracks["global_track_id"])[0]
        self._norm_meta = NormMetaTable(
            self.positions,
            [fov_name(position) for position in self.positions],
            [self.channel_names] * len(self.positions),
            self.channel_names,
            self._row_position,
            self._row_t,
        )
        self._anchor_rows = self.valid_anchors.index.to_numpy()
        if self.fit and self.time_interval != "any":
            keys = pd.MultiIndex.from_arrays([tracks["global_track_id"], tracks["t"]])
            anchors = self.valid_anchors
            later = pd.MultiIndex.from_arrays([anchors["global_track_id"], anchors["t"] + self.time_interval])
            self._positive_rows = keys.get_indexer(later)
        else:
            self._positive_rows = self._anchor_rows
        if self.fit and self.return_negative and self.time_interval != "any":
            order = np.argsort(self._row_t, kind="stable")
            self._rows_by_t = order
            n_bounds = int(self._row_t.max()) + 2 if len(order) else 1
            self._t_bounds = np.searchsorted(self._row_t[order], np.arange(n_bounds))

    def __len__(self) -> int:
        return len(self.valid_anchors)

    def _locations(self, rows: np.ndarray) -> PatchLocations:
        """FOV, time point and centre of each row's patch."""
        return PatchLocations(self._row_position[rows], self._row_t[rows], self._row_y[rows], self._row_x[rows])

    def _sample_negatives(self, anchor_rows: np.ndarray, indices: Sequence[int]) -> np.ndarray:
        """Draw, per anchor, a row of another track (at ``t + time_interval`` when possible)."""
        rng = np.random.default_rng([self.seed, *map(int, indices)])
        n_rows = len(self._row_t)
        negatives = rng.integers(0, n_rows, size=len(anchor_rows))
        if self.time_interval != "any":
            target_t = self._row_t[anchor_rows] + self.time_interval
            low = self._t_bounds[np.clip(target_t, 0, len(self._t_bounds) - 1)]
            high = self._t_bounds[np.clip(target_t + 1, 0, len(self._t_bounds) - 1)]
            has_candidates = high > low
            offsets = (rng.random(len(anchor_rows)) * np.maximum(high - low, 1)).astype(np.int64)
            at_t = self._rows_by_t[np.minimum(low + offsets, n_rows - 1)]
            negatives = np.where(has_candidates, at_t, negatives)
        for _ in range(100):
            same = self._row_track[negatives] == self._row_track[anchor_rows]
            if not same.any():
                return negatives
            negatives[same] = rng.integers(0, n_rows, size=int(same.sum()))
        if np.unique(self._row_track).size < 2:
            raise ValueError("Negatives need at least two tracks; this dataset has one.")
        return negatives

    def __getitem__(self, index: int) -> TripletSample:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        """Read a batch: ``anchor`` (and ``positive``/``negative``, or ``index``) as ``(B, C, Z, Y, X)``.

        Each patch key ``k`` comes with ``k_norm_meta``: the batch's normalization statistics,
        ``{channel: {level: {statistic: (B,) Tensor}}}`` (time-point statistics at each cell's
        time point), or None when the FOVs have none.
        A training batch also holds ``lineage``, the ``(B,)`` code of each anchor's track (its
        positive is in the same track), so that NT-Xent losses do not take a row of the anchor's
        track as its negative.
        """
        indices = np.asarray(indices, dtype=np.int64)
        anchor_rows = self._anchor_rows[indices]
        row_sets = {"anchor": anchor_rows}
        if self.fit:
            if self.time_interval != "any":
                row_sets["positive"] = self._positive_rows[indices]
            if self.return_negative:
                row_sets["negative"] = self._sample_negatives(anchor_rows, indices)
        locations = {key: self._locations(rows) for key, rows in row_sets.items()}
        sample: dict[str, Any] = {}
        for key, patches in zip(locations, self._reader.read(list(locations.values())), strict=True):
            sample[key] = patches
            sample[f"{key}_norm_meta"] = self._norm_meta.collate(locations[key].fov, locations[key].t)
        if self.fit and self.time_interval == "any":
            anchor = sample["anchor"].numpy()
            positive, sample["positive"] = self._reader.buffers.batch(anchor.shape, anchor.dtype)
            np.copyto(positive, anchor)
            sample["positive_norm_meta"] = sample["anchor_norm_meta"]
        if self.fit:
            sample["lineage"] = torch.from_numpy(self._row_track[anchor_rows].astype(np.int64))
        else:
            sample["index"] = self._tracking_index(anchor_rows)
        return sample

    def _tracking_index(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """Tracking columns of each row as Python scalars."""
        columns = [c for c in INDEX_COLUMNS if c in self.tracks.columns]
        missing = [c for c in INDEX_COLUMNS if c not in columns and c not in _OPTIONAL_INDEX_COLUMNS]
        if missing:
            raise KeyError(f"Required column {missing[0]!r} not found in data")
        return self.tracks.loc[rows, columns].to_dict(orient="records")


def _integer_index_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Cast the tracking columns of a tracks table to int (centroids are read as pixel indices)."""
    return table.astype({column: int for column in table.columns if column in INDEX_COLUMNS})


class TripletDataModule(PlateDataModule):
    """Contrastive triplets of tracked cells from an HCS plate and its Ultrack tracks.

    Where a batch is read, normalized and augmented: a reading thread
    (:class:`~viscy_data.thread_loader.ThreadedDataLoader`) reads a whole batch of
    ``initial_yx_patch_size`` patches around the tracked cells in one tensorstore read
    (:meth:`TripletDataset.__getitems__`), with no per-sample transform. After the batch
    reaches the device, :meth:`on_after_batch_transfer` runs the transforms channel by
    channel in the order of :mod:`viscy_data.after_transfer`: ``normalizations``, then the
    spatial ``augmentations`` ending in the crop to ``(z_window_size, *final_yx_patch_size)``
    (a random affine resamples straight into it), then the intensity ``augmentations`` on
    the final patch (anchors of ``time_interval`` ``"any"`` or 0, prediction batches and,
    without ``augment_validation``, validation batches are not augmented). The augmentations
    of each batch are seeded by ``(seed, epoch, rank, batch position)``
    (:mod:`viscy_data.seeding`): the same seed gives the same training, and a run resumed
    mid-epoch augments as the uninterrupted run did. For per-sample CPU
    transforms, see :class:`~viscy_data.hcs.HCSDataModule`.

    Parameters
    ----------
    data_path : str
        HCS OME-Zarr plate.
    tracks_path : str
        Root of the tracks CSVs, ``tracks_path/<row>/<col>/<fov>/*.csv``.
    source_channel : str or Sequence[str]
        Channels to read.
    z_range : tuple[int, int]
        Z slices to read, ``[start, stop)``.
    initial_yx_patch_size : tuple[int, int]
        YX size read around each cell (room for augmentation).
    final_yx_patch_size : tuple[int, int]
        YX size after the final center crop.
    split_ratio : float
        Fraction of FOVs used for training.
    batch_size : int
        Anchors per batch.
    num_workers : int
        Threads reading batches (more than 1 rarely helps: tensorstore reads are already
        parallel); see :class:`~viscy_data.thread_loader.ThreadedDataLoader`.
    normalizations : list[MapTransform], optional
        Batched transforms applied to every batch first, on the device, channel by channel.
    augmentations : list[MapTransform], optional
        Batched transforms applied on the device after the normalizations, to training
        batches (and validation with ``augment_validation``).
    augment_validation : bool
        Augment validation batches too.
    caching : bool
        Read fit data from a local copy of the plate (see :class:`~viscy_data.plate.PlateDataModule`).
    fit_include_wells : list[str], optional
        Wells to use (all when None).
    fit_exclude_fovs : list[str], optional
        FOVs to leave out.
    predict_cells : bool
        Predict only the cells of ``include_fov_names`` and ``include_track_ids``.
    include_fov_names : list[str], optional
        FOV of each predicted cell.
    include_track_ids : list[int], optional
        Track of each predicted cell.
    time_interval : "any" or int
        Frames between anchor and positive; ``"any"`` uses an augmented copy.
    return_negative : bool
        Also return negatives.
    persistent_workers : bool
        Accepted for reference configs; only the default ``False`` is accepted: batches are
        read by threads of the training process
        (:class:`~viscy_data.thread_loader.ThreadedDataLoader`), which share the dataset and
        start with each epoch at no cost, so there are no worker processes to keep alive.
    prefetch_factor : int, optional
        Batches prefetched per worker.
    pin_memory : bool
        Read batches into page-locked memory; when training on CUDA, the loader threads then copy
        each batch to the GPU asynchronously on a side stream, overlapping the steps before it
        (:class:`~viscy_data.thread_loader.ThreadedDataLoader`'s ``copy_to``).
    z_window_size : int, optional
        Z size after the final crop; default the size of ``z_range``.
    cache_pool_bytes : int
        Tensorstore chunk cache size.
    seed : int
        Seed of the FOV split, the shuffle, the negative sampling and the augmentations.
    """

    _loader_class = ThreadedDataLoader
    _collate_fn = staticmethod(no_collation)

    def __init__(
        self,
        data_path: str,
        tracks_path: str,
        source_channel: str | Sequence[str],
        z_range: tuple[int, int],
        initial_yx_patch_size: tuple[int, int] = (512, 512),
        final_yx_patch_size: tuple[int, int] = (224, 224),
        split_ratio: float = 0.8,
        batch_size: int = 16,
        num_workers: int = 1,
        normalizations: list[MapTransform] | None = None,
        augmentations: list[MapTransform] | None = None,
        augment_validation: bool = True,
        caching: bool = False,
        fit_include_wells: list[str] | None = None,
        fit_exclude_fovs: list[str] | None = None,
        predict_cells: bool = False,
        include_fov_names: list[str] | None = None,
        include_track_ids: list[int] | None = None,
        time_interval: Literal["any"] | int = "any",
        return_negative: bool = True,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        pin_memory: bool = False,
        z_window_size: int | None = None,
        cache_pool_bytes: int = 0,
        seed: int = 0,
    ) -> None:
        import_optional("tensorstore", extra="triplet", feature="TripletDataModule")
        accept_default_only(
            "persistent_workers",
            persistent_workers,
            False,
            "TripletDataModule reads batches in threads of the training process, which share the dataset and "
            "start with each epoch at no cost: leave persistent_workers false",
        )
        if num_workers > 1:
            warnings.warn("Using more than 1 thread worker will likely degrade performance.", stacklevel=2)
        z_start, z_stop = z_range
        super().__init__(
            data_path, source_channel, z_window_size or z_stop - z_start, split_ratio, final_yx_patch_size, caching
        )
        self._set_loader_settings(batch_size, num_workers, persistent_workers, prefetch_factor, pin_memory, seed)
        self.z_range = slice(z_start, z_stop)
        self.tracks_path = Path(tracks_path)
        self.initial_yx_patch_size = tuple(initial_yx_patch_size)
        self.final_yx_patch_size = tuple(final_yx_patch_size)
        self.normalizations = list(normalizations or [])
        self.augmentations = list(augmentations or [])
        self.augment_validation = augment_validation
        self._batch_seeder = BatchSeeder()
        self.fit_include_wells = fit_include_wells
        self.fit_exclude_fovs = fit_exclude_fovs
        self.predict_cells = predict_cells
        self.include_fov_names = include_fov_names
        self.include_track_ids = include_track_ids
        self.time_interval = time_interval
        self.return_negative = return_negative
        self.cache_pool_bytes = cache_pool_bytes
        self._check_inputs()
        crop = {"crop_keys": self.source_channel, "crop_size": (self.z_window_size, *self.final_yx_patch_size)}
        self._augmentation_transform = after_transfer_pipeline(self.normalizations + self.augmentations, **crop)
        self._no_augmentation_transform = after_transfer_pipeline(self.normalizations, **crop)
        self.read_yx_patch_size = smallest_read_yx(
            self._augmentation_transform, self.initial_yx_patch_size, self.z_range.stop - self.z_range.start
        )
        if self.read_yx_patch_size != self.initial_yx_patch_size:
            _logger.info(
                "Reading %s around each cell instead of initial_yx_patch_size %s: the augmentations sample nothing "
                "outside it (percentiles of a percentile normalization are taken over this smaller region).",
                self.read_yx_patch_size,
                self.initial_yx_patch_size,
            )

    def _check_inputs(self) -> None:
        """Validate the store, its channels, ``z_range``, the Z window, the tracks and the patch sizes."""
        n_slices = _validate_store_channels(self.data_path, self.source_channel, self.array_key)[2]
        start, stop = self.z_range.start, self.z_range.stop
        _check_z_range(start, stop, n_slices, str(self.data_path))
        if not 1 <= self.z_window_size <= stop - start:
            raise ValueError(
                f"z_window_size {self.z_window_size} does not fit z_range {(start, stop)}; "
                f"use 1 <= z_window_size <= {stop - start}."
            )
        if not self.tracks_path.is_dir():
            raise NotADirectoryError(f"tracks_path {self.tracks_path} is not a directory.")
        if any(size < final for size, final in zip(self.initial_yx_patch_size, self.final_yx_patch_size, strict=True)):
            raise ValueError(
                f"initial_yx_patch_size {self.initial_yx_patch_size} is smaller than "
                f"final_yx_patch_size {self.final_yx_patch_size}."
            )

    def _align_tracks_tables_with_positions(self, data_path: Path) -> tuple[list[Position], list[pd.DataFrame]]:
        """Return the selected positions and the tracks table of each."""
        plate = open_ome_zarr(data_path, layout="hcs", mode="r")
        positions = select_positions(plate, self.fit_include_wells, self.fit_exclude_fovs)
        tables = [
            _integer_index_columns(read_tracks_csv(self.tracks_path / fov_name(position), f"FOV {fov_name(position)}"))
            for position in positions
        ]
        return positions, tables

    @property
    def _dataset_settings(self) -> dict[str, Any]:
        return {
            "channel_names": self.source_channel,
            "z_range": self.z_range,
            "time_interval": self.time_interval,
            "cache_pool_bytes": self.cache_pool_bytes,
            "initial_yx_patch_size": self.initial_yx_patch_size,
            "read_yx_patch_size": self.read_yx_patch_size,
            "pin_memory": self.pin_memory,
        }

    def _setup_fit(self) -> None:
        positions, tables = self._align_tracks_tables_with_positions(self.maybe_cached_data_path)
        if len(positions) < 2:
            raise ValueError(f"At least 2 FOVs are required for training and validation; {len(positions)} selected.")
        train_index, val_index = self._split_positions(list(range(len(positions))))
        settings = {**self._dataset_settings, "fit": True, "return_negative": self.return_negative, "seed": self.seed}
        self.train_dataset = TripletDataset(
            [positions[i] for i in train_index], [tables[i] for i in train_index], **settings
        )
        self.val_dataset = TripletDataset([positions[i] for i in val_index], [tables[i] for i in val_index], **settings)

    def _setup_predict(self) -> None:
        set_track_meta(True)
        positions, tables = self._align_tracks_tables_with_positions(self.data_path)
        self.predict_dataset = TripletDataset(
            positions,
            tables,
            fit=False,
            predict_cells=self.predict_cells,
            include_fov_names=self.include_fov_names,
            include_track_ids=self.include_track_ids,
            **self._dataset_settings,
        )

    def _find_transform(self, key: str) -> DictTransform:
        """Choose the augmenting or the plain transform for one batch key."""
        trainer = self.trainer
        if trainer is not None and (trainer.predicting or (trainer.validating and not self.augment_validation)):
            return self._no_augmentation_transform
        if key == "anchor" and self.time_interval in ("any", 0):
            return self._no_augmentation_transform
        return self._augmentation_transform

    def on_after_batch_transfer(self, batch: dict[str, Any] | Tensor, dataloader_idx: int) -> dict[str, Any] | Tensor:
        """Normalize, augment and crop each patch key on the device, channel by channel.

        The augmentations are reseeded first from ``(seed, epoch, rank, batch position)``
        (:class:`~viscy_data.seeding.BatchSeeder`).
        """
        if isinstance(batch, Tensor):
            return batch
        self._batch_seeder(self._augmentation_transform, self.seed, self.trainer)
        for key in ("anchor", "positive", "negative"):
            if key in batch:
                norm_meta = batch.pop(f"{key}_norm_meta", None)
                batch[key] = transform_channel_wise(
                    self._find_transform(key), self.source_channel, batch[key], norm_meta
                )
        return batch
