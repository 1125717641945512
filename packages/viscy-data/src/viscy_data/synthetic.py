"""Synthetic HCS OME-Zarr plates with moving, dividing, infected cells.

:func:`write_synthetic_plate` writes everything the data modules read, at any size:

- an HCS OME-Zarr plate (through iohub) whose positions hold array ``"0"`` shaped
  ``(T, C, Z, Y, X)``. Channel 0 is label-free-like (textured cells on a textured
  background, in focus at the cell's z), channel 1 a fluorescence infection reporter whose
  change after the cell's infection onset in infected wells is the ``infection_phenotype``
  (see :data:`INFECTION_PHENOTYPES`), channels 2+ a nuclear stain;
- normalization metadata in ``.zattrs`` with the layout ``viscy preprocess`` writes (see
  :mod:`viscy_data.normalization`): dataset, FOV and per-timepoint statistics of the FOV on
  each position; dataset and all-FOV per-timepoint statistics on the plate;
- one Ultrack tracks CSV per FOV, ``tracks_path/<row>/<col>/<fov>/tracks.csv``, with
  columns ``track_id, t, id, parent_track_id, parent_id, z, y, x``. Cells random-walk and
  divide: a dividing track ends, and two daughter tracks with new ``track_id`` and
  ``parent_track_id`` start in the next frame. ``parent_id`` is the previous node of the
  lineage, -1 for roots;
- a ground-truth annotations CSV with ``fov_name, id, track_id, t``, the other tracking
  columns (``parent_track_id, parent_id, z, y, x``) and ``infection_state,
  cell_division_state`` coded as in
  :data:`viscy_data._typing.LABEL_INFECTION_STATE` and
  :data:`viscy_data._typing.LABEL_CELL_DIVISION_STATE`.

The same seed writes the same plate.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from viscy_data.normalization import NORMALIZATION_FIELD, compute_statistics, write_meta_field
from viscy_data.ome_compat import SUPPORTED_OME_VERSIONS, open_ome_zarr

__all__ = [
    "DEFAULT_WELL_CONDITIONS",
    "INFECTION_PHENOTYPES",
    "TRACK_COLUMNS",
    "SyntheticPlate",
    "relocalize",
    "write_synthetic_plate",
]

_logger = logging.getLogger(__name__)

DEFAULT_WELL_CONDITIONS: dict[str, str] = {
    "A/1": "uninfected",
    "A/2": "infected",
    "B/1": "uninfected",
    "B/2": "infected",
}
"""Wells written when none are given: two mock and two infected wells."""

TRACK_COLUMNS = ("track_id", "t", "id", "parent_track_id", "parent_id", "z", "y", "x")
"""Columns of the Ultrack tracks CSVs, in file order."""

ANNOTATION_COLUMNS = (
    "fov_name",
    "id",
    "track_id",
    "t",
    "parent_track_id",
    "parent_id",
    "z",
    "y",
    "x",
    "infection_state",
    "cell_division_state",
)
"""Columns of the ground-truth annotations CSV, in file order."""

INFECTION_PHENOTYPES: dict[str, str] = {
    "brightening": "the dim, diffuse reporter turns bright and nuclear: visible in per-cell intensity statistics",
    "relocalization": (
        "the reporter's pixel values move, unchanged, from cytoplasmic puncta into the nucleus: every cell keeps "
        "its reporter intensity histogram (total, mean, std, percentiles), only where the intensity sits changes"
    ),
}
"""What the reporter (channel 1) of an infected cell does after its onset, by ``infection_phenotype``.

With ``"relocalization"`` the reporter's expression level also varies between lineages (log-normal,
inherited by daughters), so that neither a cell's brightness nor its intensity statistics tell
infected from uninfected cells: only the spatial pattern does.
"""

_MAX_STATISTIC_VOXELS = 1 << 18
"""Statistics use every voxel of a frame up to this many, an even stride beyond."""

_SUPPORTED_DTYPES = ("float32", "uint16")
_UINT16_SCALE = 1000.0


@dataclass(frozen=True)
class SyntheticPlate:
    """Paths and layout of a plate written by :func:`write_synthetic_plate`.

    Attributes
    ----------
    store_path : Path
        The HCS OME-Zarr store.
    tracks_path : Path
        Root of the per-FOV tracks CSVs.
    annotations_path : Path
        Ground-truth annotations CSV.
    channel_names : tuple[str, ...]
        Channels of array ``"0"``, in order.
    fov_names : list[str]
        Positions, e.g. ``"A/1/0"``, in the order they were written.
    well_conditions : dict[str, str]
        Well name (e.g. ``"A/1"``) to condition.
    interval_minutes : float
        Time between frames.
    shape : tuple[int, int, int, int, int]
        ``(T, C, Z, Y, X)`` of every position's array ``"0"``.
    infected_conditions : tuple[str, ...]
        Conditions whose cells get infected.
    version : str
        OME-Zarr version written (``"0.4"``: zarr format 2, ``"0.5"``: zarr format 3).
    seed : int
        Seed the plate was generated from.
    infection_phenotype : str
        What the reporter of infected cells does (:data:`INFECTION_PHENOTYPES`).
    """

    store_path: Path
    tracks_path: Path
    annotations_path: Path
    channel_names: tuple[str, ...]
    fov_names: list[str]
    well_conditions: dict[str, str]
    interval_minutes: float
    shape: tuple[int, int, int, int, int]
    infected_conditions: tuple[str, ...] = ("infected",)
    version: str = "0.4"
    seed: int = 0
    infection_phenotype: str = "brightening"

    def tracks_csv(self, fov_name: str) -> Path:
        """Path of one FOV's tracks CSV."""
        return self.tracks_path / fov_name / "tracks.csv"

    def read_tracks(self) -> pd.DataFrame:
        """All tracks of the plate in one table, with a ``fov_name`` column first."""
        tables = [pd.read_csv(self.tracks_csv(name)).assign(fov_name=name) for name in self.fov_names]
        tracks = pd.concat(tables, ignore_index=True)
        return tracks[["fov_name", *TRACK_COLUMNS]]

    def read_annotations(self) -> pd.DataFrame:
        """Read the ground-truth annotations table."""
        return pd.read_csv(self.annotations_path)

    def hours_post_infection(self, t: int | np.ndarray) -> float | np.ndarray:
        """Hours since infection (the first frame) at frame ``t``."""
        return t * self.interval_minutes / 60.0

    def corrupt_chunk(self, fov_name: str, t: int, channel: int = 0) -> Path:
        """Truncate the chunk file of one time point and channel of a FOV's array ``"0"``.

        For tests of read errors: reading that chunk afterwards fails to decode. Needs the
        default chunks (one ``(Z, Y, X)`` stack per chunk); works for zarr formats 2 and 3.

        Parameters
        ----------
        fov_name : str
            FOV, e.g. ``"A/1/0"``.
        t : int
            Time point.
        channel : int
            Channel index.

        Returns
        -------
        Path
            The truncated chunk file.

        Raises
        ------
        FileNotFoundError
            If no chunk file holds that time point and channel alone.
        """
        array_dir = self.store_path / fov_name / "0"
        key = f"{t}.{channel}.0.0.0"
        for path in sorted(array_dir.rglob("*")):
            relative = ".".join(path.relative_to(array_dir).parts)
            if path.is_file() and (relative == key or relative.endswith(f".{key}")):
                data = path.read_bytes()
                path.write_bytes(data[: len(data) // 2])
                return path
        raise FileNotFoundError(f"No chunk file of time point {t}, channel {channel} under {array_dir}.")


@dataclass
class _Cell:
    """A live cell: its track, position and the texture it carries."""

    track_id: int
    parent_track_id: int
    last_node_id: int
    y: int
    x: int
    z: int
    infection_onset_hours: float
    texture: np.ndarray
    divides_at: int | None = field(default=None)
    born_from_division: bool = False
    reporter_texture: np.ndarray | None = None
    expression: float = 1.0


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise scaled to zero mean and unit standard deviation."""
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    kernel = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))
    smooth = np.fft.ifft2(np.fft.fft2(noise) * kernel).real
    return ((smooth - smooth.mean()) / (smooth.std() + 1e-12)).astype(np.float32)


def relocalize(values: np.ndarray, centrality: np.ndarray, level: float) -> np.ndarray:
    """Rearrange an image's values towards its most central pixels, keeping the values themselves.

    Pixels are ranked by ``(1 - level) * rank(values) + level * rank(centrality)`` and receive the
    sorted values in that order: ``level`` 0 returns ``values`` unchanged, ``level`` 1 puts the
    brightest value on the most central pixel, the next brightest on the next, and so on. The
    result is always a permutation of ``values``, so its histogram (sum, mean, std, percentiles)
    is that of ``values``.

    Parameters
    ----------
    values : np.ndarray
        Image to rearrange.
    centrality : np.ndarray
        Same shape; higher is more central (e.g. minus the distance to the nucleus).
    level : float
        Relocalization in ``[0, 1]``.

    Returns
    -------
    np.ndarray
        The rearranged image, shaped and typed as ``values``.

    Raises
    ------
    ValueError
        If the shapes differ or ``level`` lies outside ``[0, 1]``.
    """
    if values.shape != centrality.shape:
        raise ValueError(f"values {values.shape} and centrality {centrality.shape} must have the same shape.")
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"level must lie in [0, 1], got {level}.")
    flat = values.ravel()
    if level == 0.0 or flat.size < 2:
        return values.copy()
    scale = 1.0 / (flat.size - 1)
    value_rank = np.argsort(np.argsort(flat, kind="stable"), kind="stable") * scale
    central_rank = np.argsort(np.argsort(centrality.ravel(), kind="stable"), kind="stable") * scale
    order = np.argsort((1.0 - level) * value_rank + level * central_rank, kind="stable")
    moved = np.empty_like(flat)
    moved[order] = np.sort(flat)
    return moved.reshape(values.shape)


def _validate_wells(well_conditions: Mapping[str, str]) -> dict[str, str]:
    if not well_conditions:
        raise ValueError("At least one well is required; got an empty well_conditions mapping.")
    for well in well_conditions:
        parts = well.split("/")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"Well name {well!r} must look like '<row>/<column>', e.g. 'A/1'.")
    return dict(well_conditions)


class _FovSimulation:
    """Cell trajectories, divisions and infection of one field of view."""

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        zyx_shape: tuple[int, int, int],
        n_frames: int,
        cells_per_fov: int,
        cell_radius: float,
        step_sigma: float,
        division_probability: float,
        infected: bool,
        interval_minutes: float,
        infection_phenotype: str = "brightening",
    ) -> None:
        self.rng = rng
        self.relocalizes = infection_phenotype == "relocalization"
        self.zyx_shape = zyx_shape
        self.n_frames = n_frames
        self.radius = cell_radius
        self.step_sigma = step_sigma
        self.division_probability = division_probability
        self.infected = infected
        self.interval_hours = interval_minutes / 60.0
        self.max_cells = 4 * cells_per_fov
        self.next_track_id = 1
        self.next_node_id = 1
        margin = int(np.ceil(cell_radius))
        self.low = margin
        self.high = (zyx_shape[1] - 1 - margin, zyx_shape[2] - 1 - margin)
        self.cells = [self._new_cell(*self._random_position(), parent=None) for _ in range(cells_per_fov)]

    def _random_position(self) -> tuple[int, int]:
        y = int(self.rng.integers(self.low, self.high[0] + 1))
        x = int(self.rng.integers(self.low, self.high[1] + 1))
        return y, x

    def _new_cell(self, y: int, x: int, parent: _Cell | None) -> _Cell:
        size = 2 * int(np.ceil(self.radius)) + 1
        duration = max(self.n_frames - 1, 1) * self.interval_hours
        cell = _Cell(
            track_id=self.next_track_id,
            parent_track_id=-1 if parent is None else parent.track_id,
            last_node_id=-1 if parent is None else parent.last_node_id,
            y=y,
            x=x,
            z=self.zyx_shape[0] // 2 + int(self.rng.integers(-1, 2)) if self.zyx_shape[0] > 2 else 0,
            infection_onset_hours=(
                parent.infection_onset_hours if parent is not None else float(self.rng.uniform(0.25, 0.75) * duration)
            ),
            texture=_smooth_noise(self.rng, (size, size), sigma=1.5),
            born_from_division=parent is not None,
        )
        if self.relocalizes:
            # drawn only for this phenotype, so that "brightening" plates stay as they were
            cell.reporter_texture = _smooth_noise(self.rng, (size, size), sigma=1.0)
            cell.expression = parent.expression if parent is not None else float(self.rng.lognormal(0.0, 0.4))
        self.next_track_id += 1
        return cell

    def _clip(self, y: float, x: float) -> tuple[int, int]:
        return int(np.clip(round(y), self.low, self.high[0])), int(np.clip(round(x), self.low, self.high[1]))

    def step(self, t: int) -> list[dict[str, int]]:
        """Advance to frame ``t`` and return one record per cell present in it."""
        if t > 0:
            self._advance(t)
        records = []
        n_dividing = 0
        for cell in self.cells:
            node_id = self.next_node_id
            self.next_node_id += 1
            room = t < self.n_frames - 1 and len(self.cells) + n_dividing < self.max_cells
            if room and self.rng.random() < self.division_probability:
                cell.divides_at = t
                n_dividing += 1
            hpi = t * self.interval_hours
            records.append(
                {
                    "track_id": cell.track_id,
                    "t": t,
                    "id": node_id,
                    "parent_track_id": cell.parent_track_id,
                    "parent_id": cell.last_node_id,
                    "z": cell.z,
                    "y": cell.y,
                    "x": cell.x,
                    "infection_state": int(self.infected and hpi >= cell.infection_onset_hours),
                    "cell_division_state": int(cell.divides_at == t or cell.born_from_division),
                }
            )
            cell.last_node_id = node_id
        return records

    def _advance(self, t: int) -> None:
        survivors: list[_Cell] = []
        for cell in self.cells:
            if cell.divides_at == t - 1:
                angle = self.rng.uniform(0, np.pi)
                dy, dx = 0.8 * self.radius * np.sin(angle), 0.8 * self.radius * np.cos(angle)
                for sign in (1, -1):
                    survivors.append(self._new_cell(*self._clip(cell.y + sign * dy, cell.x + sign * dx), parent=cell))
                continue
            cell.born_from_division = False
            dy, dx = self.rng.normal(0.0, self.step_sigma, size=2)
            cell.y, cell.x = self._clip(cell.y + dy, cell.x + dx)
            survivors.append(cell)
        self.cells = survivors

    def infection_level(self, cell: _Cell, t: int) -> float:
        """Return the reporter relocalization in [0, 1]: 0 before onset, 0.3 at onset, 1 three frames later."""
        hpi = t * self.interval_hours
        if not self.infected or hpi < cell.infection_onset_hours:
            return 0.0
        ramp_hours = 3.0 * self.interval_hours
        return float(np.clip(0.3 + 0.7 * (hpi - cell.infection_onset_hours) / ramp_hours, 0.3, 1.0))

    def render(self, t: int, n_channels: int, background: np.ndarray) -> np.ndarray:
        """Image of the current cells at frame ``t``, ``(C, Z, Y, X)`` float32."""
        n_z, height, width = self.zyx_shape
        frame = np.zeros((n_channels, n_z, height, width), dtype=np.float32)
        frame[0] = 0.2 + 0.05 * background
        frame[1:] = 0.05
        half = int(np.ceil(self.radius)) + 2
        offsets = np.arange(-half, half + 1, dtype=np.float32)
        distance = np.hypot(offsets[:, None], offsets[None, :])
        cytoplasm = 1.0 / (1.0 + np.exp((distance - self.radius) / 0.7))
        nucleus = 1.0 / (1.0 + np.exp((distance - 0.5 * self.radius) / 0.5))
        cytoplasm_only = cytoplasm * (1.0 - nucleus)
        z_sigma = max(n_z / 4.0, 0.75)
        z_index = np.arange(n_z, dtype=np.float32)
        for cell in self.cells:
            focus = np.exp(-0.5 * ((z_index - cell.z) / z_sigma) ** 2)[:, None, None]
            texture = np.pad(cell.texture, 2, mode="reflect")
            level = self.infection_level(cell, t)
            patches = [cytoplasm * (0.5 + 0.1 * np.clip(texture, -2.0, 2.0))]
            if n_channels > 1 and self.relocalizes:
                puncta = 1.0 + 0.5 * np.clip(np.pad(cell.reporter_texture, 2, mode="reflect"), -2.0, 2.0)
                patches.append(relocalize(0.3 * cell.expression * cytoplasm_only * puncta, -distance, level))
            elif n_channels > 1:
                patches.append(0.15 * (1.0 - level) * cytoplasm + (0.15 + 1.35 * level) * level * nucleus)
            patches.extend((1.0 + 0.5 * c) * nucleus for c in range(n_channels - 2))
            y0, x0 = cell.y - half, cell.x - half
            ys = slice(max(y0, 0), min(y0 + 2 * half + 1, height))
            xs = slice(max(x0, 0), min(x0 + 2 * half + 1, width))
            local = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
            for channel, patch in enumerate(patches):
                frame[channel, :, ys, xs] += focus * patch[local]
        frame += self.rng.normal(0.0, 0.02, size=frame.shape).astype(np.float32)
        return frame


def _stored_values(frame: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast a rendered float frame to the stored dtype."""
    if dtype == np.uint16:
        return np.clip(np.rint(frame * _UINT16_SCALE), 0, np.iinfo(np.uint16).max).astype(np.uint16)
    return frame.astype(dtype)


def _statistics_sample(values: np.ndarray) -> np.ndarray:
    """Every voxel, or an even stride of at most ``_MAX_STATISTIC_VOXELS`` of them."""
    flat = values.ravel()
    step = max(1, -(-flat.size // _MAX_STATISTIC_VOXELS))
    return flat[::step].astype(np.float32)


def _claim_outputs(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse to replace existing outputs unless asked to; with ``overwrite`` remove them."""
    existing = [path for path in paths if path.exists()]
    if existing and not overwrite:
        listed = ", ".join(str(path) for path in existing)
        raise FileExistsError(f"Refusing to overwrite {listed}; pass overwrite=True to replace.")
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def write_synthetic_plate(
    store_path: str | Path,
    *,
    tracks_path: str | Path | None = None,
    annotations_path: str | Path | None = None,
    channel_names: Sequence[str] = ("Phase3D", "GFP"),
    well_conditions: Mapping[str, str] | None = None,
    infected_conditions: Sequence[str] = ("infected",),
    fovs_per_well: int = 2,
    n_frames: int = 4,
    z_slices: int = 5,
    yx_size: tuple[int, int] = (64, 64),
    cells_per_fov: int = 4,
    cell_radius: float = 5.0,
    step_sigma: float = 1.5,
    division_probability: float = 0.1,
    interval_minutes: float = 30.0,
    infection_phenotype: str = "brightening",
    dtype: str = "float32",
    chunks: tuple[int, int, int, int, int] | None = None,
    version: str = "0.4",
    seed: int = 0,
    overwrite: bool = False,
) -> SyntheticPlate:
    """Write a synthetic HCS OME-Zarr plate, its tracks and its ground-truth annotations.

    Parameters
    ----------
    store_path : str or Path
        Path of the OME-Zarr store to create, e.g. ``"plate.zarr"``.
    tracks_path : str or Path, optional
        Root of the tracks CSVs; default ``<store parent>/tracks``.
    annotations_path : str or Path, optional
        Annotations CSV; default ``<store parent>/annotations.csv``.
    channel_names : Sequence[str]
        Channel 0 is label-free-like, channel 1 the infection reporter, later channels a
        nuclear stain.
    well_conditions : Mapping[str, str], optional
        Well name (``"<row>/<column>"``) to condition; default
        :data:`DEFAULT_WELL_CONDITIONS`.
    infected_conditions : Sequence[str]
        Conditions whose cells get infected.
    fovs_per_well : int
        Positions per well, named ``"0"``, ``"1"``...
    n_frames : int
        Time points T.
    z_slices : int
        Z slices.
    yx_size : tuple[int, int]
        Image height and width.
    cells_per_fov : int
        Cells in the first frame of each FOV; divisions stop at four times as many.
    cell_radius : float
        Cell radius in pixels.
    step_sigma : float
        Standard deviation of a cell's random-walk step per frame, in pixels.
    division_probability : float
        Chance that a cell divides in a frame (its daughters appear in the next one).
    interval_minutes : float
        Time between frames; frame ``t`` is ``t * interval_minutes / 60`` hours post infection.
        Each infected cell's onset is drawn uniformly in the middle half of the time course.
    infection_phenotype : {"brightening", "relocalization"}
        What the reporter of an infected cell does after its onset (:data:`INFECTION_PHENOTYPES`):
        ``"brightening"`` is visible in per-cell intensity statistics, ``"relocalization"``
        (which also varies the reporter's expression between lineages) is not.
    dtype : str
        ``"float32"`` or ``"uint16"`` (intensities scaled by 1000).
    chunks : tuple of 5 ints, optional
        Zarr chunks of array ``"0"``; default one ``(Z, Y, X)`` stack per chunk.
    version : str
        OME-Zarr version: ``"0.4"`` (zarr format 2) or ``"0.5"`` (zarr format 3, needs
        iohub >= 0.3, see :data:`viscy_data.ome_compat.SUPPORTED_OME_VERSIONS`).
    seed : int
        Seed of every random choice; the same seed writes the same plate.
    overwrite : bool
        Replace an existing store, tracks CSVs and annotations CSV.

    Returns
    -------
    SyntheticPlate
        What was written and where.

    Raises
    ------
    FileExistsError
        If an output exists and ``overwrite`` is False.
    ValueError
        If a size, channel list, well name, infection phenotype, dtype or version is invalid.
    """
    store_path = Path(store_path)
    tracks_root = Path(tracks_path) if tracks_path is not None else store_path.parent / "tracks"
    annotations_file = Path(annotations_path) if annotations_path is not None else store_path.parent / "annotations.csv"
    channels = tuple(channel_names)
    wells = _validate_wells(DEFAULT_WELL_CONDITIONS if well_conditions is None else well_conditions)
    if not channels or len(set(channels)) != len(channels):
        raise ValueError(f"channel_names must be unique and non-empty; got {list(channels)}.")
    if infection_phenotype not in INFECTION_PHENOTYPES:
        raise ValueError(f"infection_phenotype {infection_phenotype!r} is not one of {list(INFECTION_PHENOTYPES)}.")
    if dtype not in _SUPPORTED_DTYPES:
        raise ValueError(f"dtype {dtype!r} is not supported; choose one of {list(_SUPPORTED_DTYPES)}.")
    if version not in SUPPORTED_OME_VERSIONS:
        raise ValueError(
            f"OME-Zarr version {version!r} cannot be written here; choose one of {list(SUPPORTED_OME_VERSIONS)}."
        )
    if min(fovs_per_well, n_frames, z_slices, cells_per_fov) < 1:
        raise ValueError("fovs_per_well, n_frames, z_slices and cells_per_fov must all be at least 1.")
    if min(yx_size) <= 2 * int(np.ceil(cell_radius)) + 1:
        raise ValueError(f"yx_size {tuple(yx_size)} is too small for cells of radius {cell_radius}.")

    fov_names = [f"{well}/{fov}" for well in wells for fov in range(fovs_per_well)]
    track_files = [tracks_root / name / "tracks.csv" for name in fov_names]
    _claim_outputs([store_path, annotations_file, *track_files], overwrite)

    shape = (n_frames, len(channels), z_slices, *yx_size)
    stored_dtype = np.dtype(dtype)
    infected = set(infected_conditions)
    fov_samples: dict[str, list[list[np.ndarray]]] = {}
    annotations = []
    with open_ome_zarr(store_path, layout="hcs", mode="w-", channel_names=list(channels), version=version) as plate:
        for index, name in enumerate(fov_names):
            row, column, fov = name.split("/")
            rng = np.random.default_rng([seed, index])
            simulation = _FovSimulation(
                rng,
                zyx_shape=(z_slices, *yx_size),
                n_frames=n_frames,
                cells_per_fov=cells_per_fov,
                cell_radius=cell_radius,
                step_sigma=step_sigma,
                division_probability=division_probability,
                infected=wells[f"{row}/{column}"] in infected,
                interval_minutes=interval_minutes,
                infection_phenotype=infection_phenotype,
            )
            background = _smooth_noise(rng, tuple(yx_size), sigma=4.0)
            position = plate.create_position(row, column, fov)
            image = position.create_zeros("0", shape=shape, dtype=stored_dtype, chunks=chunks)
            records = []
            samples: list[list[np.ndarray]] = [[] for _ in channels]
            for t in range(n_frames):
                records.extend(simulation.step(t))
                stored = _stored_values(simulation.render(t, len(channels), background), stored_dtype)
                image[t] = stored
                for channel in range(len(channels)):
                    samples[channel].append(_statistics_sample(stored[channel]))
            fov_samples[name] = samples
            table = pd.DataFrame.from_records(records)
            track_files[index].parent.mkdir(parents=True, exist_ok=True)
            table[list(TRACK_COLUMNS)].to_csv(track_files[index], index=False)
            annotations.append(table.assign(fov_name=name))
            _logger.info("Wrote synthetic FOV %s (%d/%d)", name, index + 1, len(fov_names))
        _write_normalization(plate, channels, fov_samples, n_frames)

    annotations_file.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(annotations, ignore_index=True)[list(ANNOTATION_COLUMNS)].to_csv(annotations_file, index=False)
    return SyntheticPlate(
        store_path=store_path,
        tracks_path=tracks_root,
        annotations_path=annotations_file,
        channel_names=channels,
        fov_names=fov_names,
        well_conditions=wells,
        interval_minutes=float(interval_minutes),
        shape=shape,
        infected_conditions=tuple(infected_conditions),
        version=version,
        seed=seed,
        infection_phenotype=infection_phenotype,
    )


def _write_normalization(
    plate, channels: tuple[str, ...], fov_samples: dict[str, list[list[np.ndarray]]], n_frames: int
) -> None:
    """Write plate- and position-level statistics like ``viscy preprocess`` does."""
    for channel_index, channel in enumerate(channels):
        per_fov = {name: samples[channel_index] for name, samples in fov_samples.items()}
        dataset = compute_statistics(np.concatenate([v for frames in per_fov.values() for v in frames]))
        plate_timepoints = {
            str(t): compute_statistics(np.concatenate([frames[t] for frames in per_fov.values()]))
            for t in range(n_frames)
        }
        write_meta_field(
            plate,
            {"dataset_statistics": dataset, "timepoint_statistics": plate_timepoints},
            NORMALIZATION_FIELD,
            channel,
        )
        for name, frames in per_fov.items():
            write_meta_field(
                plate[name],
                {
                    "dataset_statistics": dataset,
                    "fov_statistics": compute_statistics(np.concatenate(frames)),
                    "timepoint_statistics": {str(t): compute_statistics(frames[t]) for t in range(n_frames)},
                },
                NORMALIZATION_FIELD,
                channel,
            )
