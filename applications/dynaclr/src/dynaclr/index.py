"""``MultiExperimentIndex``: one table of tracked cells over every experiment of a registry.

The index reads each experiment's plate layout and per-FOV tracks CSVs, and builds, without any
per-row Python:

- ``tracks``: one row per (cell, time point) with the tracks CSV columns plus ``experiment``,
  ``condition``, ``well_name``, ``fov_name``, ``fov_index`` (into :attr:`MultiExperimentIndex.positions`),
  ``global_track_id``, ``lineage_id``, ``hours_post_infection``, ``fluorescence_channel`` and the
  patch centres ``y_clamp`` / ``x_clamp``;
- ``valid_anchors``: the rows that have a positive, a row of the same lineage ``tau`` frames later
  for some ``tau != 0`` of the experiment's tau range.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from iohub.ngff import Position

from dynaclr.experiment import ExperimentConfig, ExperimentRegistry
from dynaclr.tau_sampling import tau_probabilities
from viscy_data.tracks import read_tracks_csv

__all__ = ["FovInfo", "MultiExperimentIndex"]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FovInfo:
    """One field of view of the index.

    Attributes
    ----------
    experiment : str
        Experiment name.
    fov_name : str
        Position name in its plate, e.g. ``"A/1/0"``.
    well_name : str
        ``"<row>/<column>"``.
    condition : str
        Condition of the well.
    data_path : str
        The experiment's plate.
    shape : tuple[int, int, int, int, int]
        ``(T, C, Z, Y, X)`` of the position's array ``"0"``.
    """

    experiment: str
    fov_name: str
    well_name: str
    condition: str
    data_path: str
    shape: tuple[int, int, int, int, int]


class MultiExperimentIndex:
    """Tracked cells of every experiment in one table, with lineages, patch centres and valid anchors.

    Parameters
    ----------
    registry : ExperimentRegistry
        The experiments.
    z_range : slice or tuple[int, int]
        Z slices of a patch, ``[start, stop)``; must fit every FOV.
    yx_patch_size : tuple[int, int]
        Patch height and width read around each cell (before any final crop).
    tau_range_hours : tuple[float, float]
        Range of anchor-to-positive offsets in hours, converted to frames per experiment
        (:meth:`ExperimentRegistry.tau_range_frames`).
    include_wells : list[str], optional
        Only these wells (``"<row>/<column>"``); default every well of ``condition_wells``.
    exclude_fovs : list[str], optional
        FOVs (``"<row>/<column>/<fov>"``) to leave out, in every experiment.
    max_border_shift : int, optional
        Largest shift, in pixels, of a patch centre moved inward so that the patch fits the image;
        cells needing more are dropped (counted in a warning). Default None: no limit, every cell whose
        centre lies inside its image is kept, its patch moved inward as far as needed.

    Attributes
    ----------
    registry : ExperimentRegistry
    z_range : slice
    yx_patch_size : tuple[int, int]
    tau_range_hours : tuple[float, float]
    positions : list[iohub.ngff.Position]
        The FOVs' positions, opened read-only; ``tracks["fov_index"]`` indexes this list.
    fovs : list[FovInfo]
        What each FOV is, in the same order.
    tracks : pandas.DataFrame
        Every kept observation, with a RangeIndex.
    valid_anchors : pandas.DataFrame
        The anchors, a subset of ``tracks`` with a fresh RangeIndex; :attr:`anchor_rows` holds their
        positions in ``tracks``.
    anchor_rows : numpy.ndarray
        Position in ``tracks`` of each row of ``valid_anchors``.

    Raises
    ------
    FileNotFoundError
        If a FOV has no tracks CSV (the message names the experiment, FOV and directory).
    ValueError
        If a FOV has several tracks CSVs, a CSV lacks a column, ``z_range`` or ``yx_patch_size`` does not
        fit a FOV, or no observation is left.

    Notes
    -----
    Lineage follows ``parent_track_id`` within a FOV to the root track: a parent, its daughters
    and their descendants share the root's ``global_track_id`` as ``lineage_id``, so a positive can
    follow an anchor through division. A parent id that is not a track of the FOV (or -1/NaN) makes
    the track a root; a parent cycle (broken tracking) makes each track of the cycle its own root,
    with a warning. Wells missing from ``condition_wells``, cells whose centre is outside the image
    and cells beyond ``max_border_shift`` are counted in warnings, never dropped silently.
    """

    def __init__(
        self,
        registry: ExperimentRegistry,
        z_range: slice | Sequence[int],
        yx_patch_size: Sequence[int],
        tau_range_hours: Sequence[float] = (0.5, 2.0),
        include_wells: list[str] | None = None,
        exclude_fovs: list[str] | None = None,
        max_border_shift: int | None = None,
    ) -> None:
        self.registry = registry
        self.z_range = _as_slice(z_range)
        if len(yx_patch_size) != 2 or min(yx_patch_size) < 2:
            raise ValueError(f"yx_patch_size must be (height, width) of at least 2 pixels, got {tuple(yx_patch_size)}.")
        self.yx_patch_size = (int(yx_patch_size[0]), int(yx_patch_size[1]))
        self.tau_range_hours = (float(tau_range_hours[0]), float(tau_range_hours[1]))
        self.include_wells = None if include_wells is None else [well.strip("/") for well in include_wells]
        self.exclude_fovs = None if exclude_fovs is None else [fov.strip("/") for fov in exclude_fovs]
        self.max_border_shift = None if max_border_shift is None else int(max_border_shift)
        if self.max_border_shift is not None and self.max_border_shift < 0:
            raise ValueError(f"max_border_shift must be >= 0 or None (no limit), got {max_border_shift}.")
        self.positions: list[Position] = []
        self.fovs: list[FovInfo] = []
        tables = []
        for experiment in registry.experiments:
            tables.extend(self._load_experiment(experiment))
        if not tables:
            raise ValueError(
                f"No FOV selected in experiments {registry.names} (include_wells={include_wells}, "
                f"exclude_fovs={exclude_fovs})."
            )
        tracks = pd.concat(tables, ignore_index=True)
        self._check_z_range()
        tracks = self._annotate(self._clamp_borders(tracks))  # filter before the string columns exist
        if tracks.empty:
            raise ValueError(f"No observation left in experiments {registry.names} after border filtering.")
        tracks.index = pd.RangeIndex(len(tracks))  # in place: a reset_index would copy the whole table
        self.tracks = tracks
        self.anchor_rows = np.flatnonzero(self._valid_anchor_mask())
        self.valid_anchors = self.tracks.iloc[self.anchor_rows]
        self.valid_anchors.index = pd.RangeIndex(len(self.anchor_rows))

    def _load_experiment(self, experiment: ExperimentConfig) -> list[pd.DataFrame]:
        """Open the experiment's positions and read each selected FOV's tracks CSV."""
        from viscy_data.ome_compat import fov_name, open_ome_zarr

        well_conditions = {
            well.strip("/"): condition for condition, wells in experiment.condition_wells.items() for well in wells
        }
        plate = open_ome_zarr(experiment.data_path, layout="hcs", mode="r")
        unlabelled: dict[str, int] = {}
        tables = []
        for _, position in plate.positions():
            name = fov_name(position)
            well = "/".join(name.split("/")[:2])
            if self.include_wells is not None and well not in self.include_wells:
                continue
            if self.exclude_fovs is not None and name in self.exclude_fovs:
                continue
            if well not in well_conditions:
                unlabelled[well] = unlabelled.get(well, 0) + 1
                continue
            table = read_tracks_csv(Path(experiment.tracks_path) / name, f"Experiment '{experiment.name}', FOV {name}")
            table["fov_index"] = len(self.positions)
            self.fovs.append(
                FovInfo(
                    experiment=experiment.name,
                    fov_name=name,
                    well_name=well,
                    condition=well_conditions[well],
                    data_path=str(experiment.data_path),
                    shape=tuple(int(size) for size in position["0"].shape),
                )
            )
            self.positions.append(position)
            tables.append(table)
        if unlabelled:
            _logger.warning(
                "Experiment '%s': skipped %d FOVs of wells %s that condition_wells does not list.",
                experiment.name,
                sum(unlabelled.values()),
                sorted(unlabelled),
            )
        return tables

    def _check_z_range(self) -> None:
        for fov in self.fovs:
            n_slices = fov.shape[2]
            if not 0 <= self.z_range.start < self.z_range.stop <= n_slices:
                raise ValueError(
                    f"Experiment '{fov.experiment}', FOV {fov.fov_name}: z_range "
                    f"[{self.z_range.start}, {self.z_range.stop}) does not fit its {n_slices} Z slices."
                )
            height, width = fov.shape[3:]
            if height < self.yx_patch_size[0] or width < self.yx_patch_size[1]:
                raise ValueError(
                    f"Experiment '{fov.experiment}', FOV {fov.fov_name}: yx_patch_size {self.yx_patch_size} exceeds "
                    f"its {height}x{width} image."
                )

    def _annotate(self, tracks: pd.DataFrame) -> pd.DataFrame:
        """Add the experiment, FOV, time and lineage columns, vectorized over all rows."""
        fov_index = tracks["fov_index"].to_numpy()
        experiments = self.registry.names
        experiment_of_fov = np.array([experiments.index(fov.experiment) for fov in self.fovs])
        experiment_codes = experiment_of_fov[fov_index]
        tracks["experiment"] = pd.Categorical.from_codes(experiment_codes, categories=experiments)
        conditions = list(dict.fromkeys(fov.condition for fov in self.fovs))
        condition_of_fov = np.array([conditions.index(fov.condition) for fov in self.fovs])
        tracks["condition"] = pd.Categorical.from_codes(condition_of_fov[fov_index], categories=conditions)
        tracks["well_name"] = np.array([fov.well_name for fov in self.fovs], dtype=object)[fov_index]
        tracks["fov_name"] = np.array([fov.fov_name for fov in self.fovs], dtype=object)[fov_index]
        configs = self.registry.experiments
        hours_per_frame = np.array([config.interval_minutes / 60.0 for config in configs])[experiment_codes]
        start_hpi = np.array([config.start_hpi for config in configs])[experiment_codes]
        tracks["hours_post_infection"] = start_hpi + tracks["t"].to_numpy() * hours_per_frame
        fluorescence = np.array(
            [_fluorescence_channel(config) for config in configs],
            dtype=object,
        )
        tracks["fluorescence_channel"] = fluorescence[experiment_codes]
        global_ids, lineage_ids = self._lineage(tracks)
        tracks["global_track_id"] = global_ids
        tracks["lineage_id"] = lineage_ids
        return tracks

    def _lineage(self, tracks: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``global_track_id`` and ``lineage_id`` (the root track's id) of every row."""
        fov_index = tracks["fov_index"].to_numpy(dtype=np.int64)
        track_id = tracks["track_id"].to_numpy(dtype=np.int64)
        stride = int(track_id.max()) + 1 if len(track_id) else 1
        row_keys = fov_index * stride + track_id
        track_keys, row_track = np.unique(row_keys, return_inverse=True)
        first_row = np.full(len(track_keys), len(row_keys), dtype=np.int64)
        np.minimum.at(first_row, row_track, np.arange(len(row_keys)))
        parent = pd.to_numeric(tracks["parent_track_id"], errors="coerce").to_numpy(dtype=np.float64)[first_row]
        has_parent = np.isfinite(parent) & (parent >= 0) & (parent < stride)
        parent_keys = fov_index[first_row] * stride + np.where(has_parent, parent, 0).astype(np.int64)
        found = np.searchsorted(track_keys, parent_keys)
        found = np.minimum(found, len(track_keys) - 1)
        has_parent &= track_keys[found] == parent_keys
        root = np.where(has_parent, found, np.arange(len(track_keys)))
        for _ in range(int(np.ceil(np.log2(max(len(track_keys), 2)))) + 1):
            root = root[root]
        # A finished root has no parent; one that still has a parent lies on a cycle (of any length, 1 and 2 included).
        in_cycle = has_parent[root]
        if in_cycle.any():
            _logger.warning(
                "Parent links of %d tracks form cycles (broken tracking); each becomes its own lineage.",
                int(in_cycle.sum()),
            )
            root = np.where(in_cycle, np.arange(len(track_keys)), root)
        prefixes = np.array([f"{fov.experiment}_{fov.fov_name}_" for fov in self.fovs], dtype=object)
        track_ids = prefixes[fov_index[first_row]] + track_id[first_row].astype(str).astype(object)
        return track_ids[row_track], track_ids[root[row_track]]

    def _clamp_borders(self, tracks: pd.DataFrame) -> pd.DataFrame:
        """Drop cells outside their image, move patch centres inward, drop cells moved beyond ``max_border_shift``."""
        half_y, half_x = self.yx_patch_size[0] // 2, self.yx_patch_size[1] // 2
        fov_index = tracks["fov_index"].to_numpy()
        heights = np.array([fov.shape[3] for fov in self.fovs])[fov_index]
        widths = np.array([fov.shape[4] for fov in self.fovs])[fov_index]
        y = tracks["y"].to_numpy(dtype=np.float64)
        x = tracks["x"].to_numpy(dtype=np.float64)
        inside = (y >= 0) & (y < heights) & (x >= 0) & (x < widths)
        y_clamp = np.clip(np.floor(y), half_y, heights - half_y)
        x_clamp = np.clip(np.floor(x), half_x, widths - half_x)
        experiments = np.array([fov.experiment for fov in self.fovs], dtype=object)[fov_index]
        _warn_dropped(experiments, ~inside, "centres outside their image")
        near = np.ones(len(tracks), dtype=bool)
        if self.max_border_shift is not None:
            near = np.maximum(np.abs(y_clamp - np.floor(y)), np.abs(x_clamp - np.floor(x))) <= self.max_border_shift
            _warn_dropped(
                experiments,
                inside & ~near,
                f"patch centres more than max_border_shift={self.max_border_shift} pixels from the image border",
            )
        tracks["y_clamp"] = y_clamp.astype(np.int64)
        tracks["x_clamp"] = x_clamp.astype(np.int64)
        return tracks[inside & near].copy()  # numeric columns only: cheap, and a table of its own

    def _valid_anchor_mask(self) -> np.ndarray:
        """Rows with a same-lineage observation ``tau`` frames later for some ``tau != 0`` of their range."""
        lineage, t = self.lineage_time_keys()
        row_keys = lineage * self.time_stride + t
        keys = np.sort(row_keys)  # duplicates are harmless to the lookup, and sorting is much cheaper than unique
        experiments = self.tracks["experiment"].cat.codes.to_numpy()
        valid = np.zeros(len(self.tracks), dtype=bool)
        for code, name in enumerate(self.registry.names):
            rows = np.flatnonzero(experiments == code)
            if not len(rows):
                continue
            taus, _ = tau_probabilities(*self.registry.tau_range_frames(name, self.tau_range_hours))
            found = np.zeros(len(rows), dtype=bool)
            for tau in taus:
                found |= _contains(keys, row_keys[rows] + tau)
            valid[rows] = found
        return valid

    @property
    def time_stride(self) -> int:
        """Multiplier of lineage codes in the ``lineage * time_stride + t`` keys (beyond any ``t + tau``)."""
        t_max = int(self.tracks["t"].max()) if len(self.tracks) else 0
        return 2 * (t_max + self._max_abs_tau_frames()) + 3

    def _max_abs_tau_frames(self) -> int:
        return max(
            max(abs(bound) for bound in self.registry.tau_range_frames(name, self.tau_range_hours))
            for name in self.registry.names
        )

    def lineage_time_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Integer lineage code and shifted time of every ``tracks`` row.

        Returns
        -------
        lineage : numpy.ndarray
            Code of each row's ``lineage_id`` (int64).
        t : numpy.ndarray
            Each row's ``t`` plus an offset that keeps ``t + tau`` non-negative (int64); combine as
            ``lineage * time_stride + t``.
        """
        lineage = pd.factorize(self.tracks["lineage_id"])[0].astype(np.int64)
        return lineage, self.tracks["t"].to_numpy(dtype=np.int64) + self._max_abs_tau_frames() + 1

    @property
    def experiment_groups(self) -> dict[str, np.ndarray]:
        """Experiment name to the positions of its rows in ``tracks``."""
        return _groups(self.tracks["experiment"])

    @property
    def condition_groups(self) -> dict[str, np.ndarray]:
        """Condition to the positions of its rows in ``tracks``."""
        return _groups(self.tracks["condition"])

    def summary(self) -> str:
        """Observations, anchors and conditions per experiment, one line each.

        Returns
        -------
        str
            ``"MultiExperimentIndex: {n} experiments, {N} total observations, {M} valid anchors"``, then
            ``"  {experiment}: {n} observations, {m} anchors, conditions: {condition}({n}), ..."``.
        """
        lines = [
            f"MultiExperimentIndex: {len(self.registry.experiments)} experiments, {len(self.tracks)} total "
            f"observations, {len(self.valid_anchors)} valid anchors"
        ]
        observations = self.tracks["experiment"].value_counts()
        anchors = self.valid_anchors["experiment"].value_counts()
        for name in self.registry.names:
            of_experiment = self.tracks[self.tracks["experiment"] == name]
            counts = of_experiment["condition"].value_counts(sort=False)
            conditions = ", ".join(f"{condition}({count})" for condition, count in counts.items() if count)
            lines.append(
                f"  {name}: {observations.get(name, 0)} observations, {anchors.get(name, 0)} anchors, "
                f"conditions: {conditions}"
            )
        return "\n".join(lines)


def _as_slice(z_range: slice | Sequence[int]) -> slice:
    if isinstance(z_range, slice):
        if z_range.start is None or z_range.stop is None or z_range.step not in (None, 1):
            raise ValueError(f"z_range must be a slice with start and stop and step 1, got {z_range}.")
        return slice(int(z_range.start), int(z_range.stop))
    if len(z_range) != 2:
        raise ValueError(f"z_range must be (start, stop), got {tuple(z_range)}.")
    return slice(int(z_range[0]), int(z_range[1]))


def _fluorescence_channel(config: ExperimentConfig) -> str:
    channels = config.training_channel_names
    return channels[1] if len(channels) > 1 else ""


def _warn_dropped(experiments: np.ndarray, dropped: np.ndarray, reason: str) -> None:
    if dropped.any():
        per_experiment = pd.Series(experiments[dropped]).value_counts()
        counts = ", ".join(f"'{name}': {count}" for name, count in per_experiment.items() if count)
        _logger.warning("Dropped %d observations with %s (%s).", int(dropped.sum()), reason, counts)


def _contains(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Whether each query is in ``sorted_keys`` (ascending)."""
    if not len(sorted_keys):
        return np.zeros(len(queries), dtype=bool)
    found = np.minimum(np.searchsorted(sorted_keys, queries), len(sorted_keys) - 1)
    return sorted_keys[found] == queries


def _groups(column: pd.Series) -> dict[str, np.ndarray]:
    codes, names = pd.factorize(column)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    return {str(name): order[bounds[i] : bounds[i + 1]] for i, name in enumerate(names)}
