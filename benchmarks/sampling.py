"""Multi-experiment training path: index build, batch reads, batch sampling and a training step, each with a baseline.

Every part measures its baseline in the same run and prints one table (``--part`` picks parts, default all):

``index``: ``dynaclr.index.MultiExperimentIndex`` over 20 experiments with ~1M observations in all
  (``--index-rows``). The plates are tiny HCS stores whose array ``"0"`` is created with
  ``create_zeros`` (metadata only, no pixel is written); the tracks CSVs are large synthetic Ultrack
  tables (random walks that divide, so lineage matters, and wander off the image, so border filtering
  matters). Time is split into CSV reading, annotation, lineage, border clamping and the valid-anchor
  scan (by wrapping the index's private steps while it builds). Baseline: the reference's algorithm
  (spec ``viscy-utils-and-dynaclr.md`` §2.8) as per-row Python loops (``iterrows`` lineage following
  with a visited set, per-row border clamp, per-row valid-anchor scan over the tau range), run on
  whole FOVs of ~``--baseline-rows`` rows and extrapolated linearly to all rows (the loops are
  O(rows) with dict/set lookups); its anchors are checked against the index's on the same FOVs.
  Target: 1M rows in a few seconds.

``getitems``: patches/s of ``dynaclr.dataset.MultiExperimentTripletDataset.__getitems__`` (fit mode,
  anchor + positive) on two synthetic experiments of ``viscy_data.synthetic.write_synthetic_plate``,
  against a raw tensorstore read of the same anchor and positive regions into one preallocated batch
  array in one ``ts.Batch``; timed back to back in rotating order, no chunk cache. Target: 80% of raw.

``sampler``: ``viscy_data.sampler.FlexibleBatchSampler`` on a random table of 2M anchors (20
  experiments of different sizes, 2 conditions, HPI 0-48 h every 30 min, string columns as a parquet
  load gives them), batches of 256 with every axis on (experiment-aware with weights,
  condition-balanced, temporal enrichment, 10% leak): construction, time to the first batch, mean
  time per batch over ``--batches`` batches after the first; also as rank 3 of 8 and with every axis
  off. Baselines: the reference's algorithm (spec ``viscy-data.md`` §3.8) re-implemented (pandas
  ``groupby`` index arrays at construction; per batch, the leak pool is the concatenation of every
  other experiment's anchors and the temporal masks scan the whole experiment; its ``__iter__`` built
  the whole epoch before the first batch, so its time to the first batch is ``total_batches`` times
  its time per batch, extrapolated, not run) and ``torch.utils.data.BatchSampler(RandomSampler)``, a
  plain shuffle with no axis. Targets (issue 10): construction under 2 s, under 0.3 ms per batch.

``training``: CPU fit (``lightning.Trainer``, ``max_steps``, no logger or checkpoints) of
  ``multi_experiment_fit.yml`` with the overrides of ``multi_experiment_fit_synthetic_cpu.yml``
  (ContrastiveModule, ContrastiveEncoder convnext_atto, NTXentHCL, MultiExperimentDataModule with the
  config's normalizations, augmentations and channel dropout) over the example experiments of
  ``dynaclr.example_experiments.write_example_experiments`` (5 z, 48x48 read -> 32x32, batch 16, one
  torch thread by default: OpenMP threads spinning on a shared machine make step times erratic). Each
  step after the warm-up is split into data time (from the end of the previous step to the start of
  this one: loader wait, transfer and ``on_after_batch_transfer``, the latter also given on its own)
  and compute time (forward, backward and optimizer step); medians over the timed steps. Baseline:
  the same model fit on random tensors of the model's input shape (no reads, no transforms). With
  CUDA, the full-size config (convnext_tiny, 30 z, 384x384 -> 160x160, batch 64, bf16-mixed) is also
  fit on two synthetic experiments of 30 z x 512x512 (about 4 GB written first, which takes minutes),
  against the random-tensor fit and the reference's stated ~132 samples/s per GPU; without CUDA that
  row says it was skipped.

Run: ``uv run python benchmarks/sampling.py [--part index getitems sampler training]`` (default all,
a few minutes on 2 CPU cores); ``--help`` lists the sizes. Progress goes to stderr, tables to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import torch
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import BatchSampler, RandomSampler
from training import instantiate  # benchmarks/ is on sys.path when a benchmark runs as a script

from viscy_data.sampler import FlexibleBatchSampler

PARTS = ("index", "getitems", "sampler", "training")
CONFIGS = Path(__file__).resolve().parents[1] / "applications/dynaclr/examples/configs"
CHANNELS = ["Phase3D", "GFP"]
WELLS = {"uninfected": ["A/1"], "infected": ["B/1"]}
INTERVALS_MINUTES = (30.0, 15.0, 20.0)
TAU_RANGE_HOURS = (0.5, 2.0)

BATCH_SIZE = 256
EXPERIMENTS = 20
LEAKY = 0.1
WINDOW_HOURS = 2.0
GLOBAL_FRACTION = 0.3

REFERENCE_SAMPLES_PER_GPU = 132.0
"""The reference's stated training throughput of the full-size config, samples/s per GPU."""

_START = time.perf_counter()


def progress(message: str) -> None:
    """Print a progress line with the elapsed time to stderr.

    Parameters
    ----------
    message : str
        What is happening.
    """
    print(f"[{time.perf_counter() - _START:6.1f} s] {message}", file=sys.stderr, flush=True)


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Print a markdown table.

    Parameters
    ----------
    header : list[str]
        Column names.
    rows : list[list[str]]
        Cells, one list per row.
    """
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("-" * (len(name) + 2) for name in header) + "|")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    print(flush=True)


class Stopwatch:
    """Seconds spent under labels, by context manager or by wrapping a function."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def timing(self, label: str) -> Iterator[None]:
        """Add the time spent in the ``with`` block to ``label``.

        Parameters
        ----------
        label : str
            Name of the step.

        Yields
        ------
        None
        """
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[label] += time.perf_counter() - start

    def wrap(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """Return ``function`` adding the time of each of its calls to ``label``.

        Parameters
        ----------
        label : str
            Name of the step.
        function : Callable
            Function (or unbound method) to time.

        Returns
        -------
        Callable
            The timed function.
        """

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.timing(label):
                return function(*args, **kwargs)

        return timed


# ---------------------------------------------------------------------------------------------------------------------
# index: MultiExperimentIndex over ~1M observations against the reference's per-row loops
# ---------------------------------------------------------------------------------------------------------------------


def synthetic_fov_tracks(
    rng: np.random.Generator, n_rows: int, n_frames: int, yx_size: int, division: float = 0.02, loss: float = 0.01
) -> pd.DataFrame:
    """Make an Ultrack-style tracks table of one FOV: random walks that divide, end, and leave the image.

    Roots start in frame 0 uniformly over the image; each frame a track ends with probability
    ``division + loss``, and an ending track divides into two daughter tracks (new ``track_id``,
    ``parent_track_id`` the mother) with probability ``division / (division + loss)``. ``parent_id``
    is the previous node of the lineage (-1 for a root's first node).

    Parameters
    ----------
    rng : numpy.random.Generator
        Random generator.
    n_rows : int
        Observations of the table (the last generation is cut there).
    n_frames : int
        Time points.
    yx_size : int
        Image height and width; steps are 2 pixels, so cells near the border walk off it.
    division, loss : float
        Per-frame probabilities of dividing and of the track ending.

    Returns
    -------
    pandas.DataFrame
        Columns ``track_id, t, id, parent_track_id, parent_id, z, y, x``, ordered by track and time.
    """
    n_roots = max(1, n_rows // n_frames)
    start_t = np.zeros(n_roots, dtype=np.int64)
    parent_track = np.full(n_roots, -1)
    parent_node = np.full(n_roots, -1)
    start_yx = rng.uniform(0, yx_size, (n_roots, 2))
    pieces, next_track, next_id, total = [], 1, 1, 0
    while len(start_t) and total < n_rows:
        n_tracks = len(start_t)
        end_t = np.minimum(start_t + rng.geometric(division + loss, n_tracks) - 1, n_frames - 1)
        divides = (end_t < n_frames - 1) & (rng.random(n_tracks) < division / (division + loss))
        lengths = end_t - start_t + 1
        offsets = np.cumsum(lengths) - lengths
        owner = np.repeat(np.arange(n_tracks), lengths)
        within = np.arange(len(owner)) - offsets[owner]
        track_ids = next_track + np.arange(n_tracks)
        ids = next_id + np.arange(len(owner))
        steps = rng.normal(0.0, 2.0, (len(owner), 2))
        steps[offsets] = 0.0
        walk = np.cumsum(steps, axis=0)
        yx = start_yx[owner] + walk - walk[offsets][owner]
        pieces.append(
            pd.DataFrame(
                {
                    "track_id": track_ids[owner],
                    "t": start_t[owner] + within,
                    "id": ids,
                    "parent_track_id": parent_track[owner],
                    "parent_id": np.where(within == 0, parent_node[owner], ids - 1),
                    "z": 0,
                    "y": yx[:, 0].round(2),
                    "x": yx[:, 1].round(2),
                }
            )
        )
        next_track, next_id, total = next_track + n_tracks, next_id + len(owner), total + len(owner)
        last = (offsets + lengths - 1)[divides]
        start_t = np.repeat(end_t[divides] + 1, 2)
        parent_track = np.repeat(track_ids[divides], 2)
        parent_node = np.repeat(ids[last], 2)
        start_yx = np.repeat(yx[last], 2, axis=0) + rng.normal(0.0, 3.0, (len(start_t), 2))
    return pd.concat(pieces, ignore_index=True).iloc[:n_rows]


def write_index_experiments(
    root: Path, n_experiments: int, n_rows: int, n_frames: int, yx_size: int, fovs_per_well: int
) -> tuple[list[dict[str, Any]], int]:
    """Write metadata-only HCS plates and large synthetic tracks CSVs for the index benchmark.

    Parameters
    ----------
    root : Path
        Directory to write into.
    n_experiments : int
        Experiments; their frame intervals cycle through :data:`INTERVALS_MINUTES`.
    n_rows : int
        Observations over all FOVs of all experiments.
    n_frames : int
        Time points of every FOV.
    yx_size : int
        Image height and width of array ``"0"`` (``create_zeros``: no chunk is written).
    fovs_per_well : int
        FOVs in each of the two wells of :data:`WELLS`.

    Returns
    -------
    experiments : list[dict]
        :class:`dynaclr.experiment.ExperimentConfig` fields of each experiment.
    written : int
        Rows of all tracks CSVs.
    """
    from viscy_data.ome_compat import open_ome_zarr

    wells = [well for well_list in WELLS.values() for well in well_list]
    n_fovs = n_experiments * len(wells) * fovs_per_well
    rng = np.random.default_rng(0)
    experiments, written = [], 0
    for number in range(n_experiments):
        name = f"2025_{number:02d}_synthetic"
        data_path, tracks_path = root / f"{name}.zarr", root / f"{name}_tracks"
        with open_ome_zarr(data_path, layout="hcs", mode="w-", channel_names=CHANNELS) as plate:
            for well in wells:
                row, column = well.split("/")
                for fov in range(fovs_per_well):
                    position = plate.create_position(row, column, str(fov))
                    shape = (n_frames, len(CHANNELS), 1, yx_size, yx_size)
                    position.create_zeros("0", shape=shape, dtype=np.float32, chunks=(1, 1, 1, yx_size, yx_size))
                    csv = tracks_path / row / column / str(fov) / "tracks.csv"
                    csv.parent.mkdir(parents=True)
                    table = synthetic_fov_tracks(rng, n_rows // n_fovs, n_frames, yx_size)
                    table.to_csv(csv, index=False)
                    written += len(table)
        experiments.append(
            {
                "name": name,
                "data_path": str(data_path),
                "tracks_path": str(tracks_path),
                "channel_names": CHANNELS,
                "condition_wells": WELLS,
                "interval_minutes": INTERVALS_MINUTES[number % len(INTERVALS_MINUTES)],
                "start_hpi": float(number % 4),
            }
        )
    return experiments, written


def reference_index(index: Any, n_fovs: int, stopwatch: Stopwatch) -> tuple[int, pd.DataFrame, pd.DataFrame]:
    """Build the reference's index with per-row loops (spec §2.8), over the first ``n_fovs`` FOVs of ``index``.

    Annotation is vectorized per FOV as in the reference; lineage, border clamping and the valid-anchor
    scan are its per-row ``iterrows`` loops. The border clamp uses the index's ``max_border_shift`` (None: no
    limit) with ``floor`` of the centre, as :class:`~dynaclr.index.MultiExperimentIndex` does, so that both keep
    the same rows.

    Parameters
    ----------
    index : MultiExperimentIndex
        Built index, for its registry, FOVs (names, shapes), patch size and border shift.
    n_fovs : int
        Leading FOVs of ``index.fovs`` to build.
    stopwatch : Stopwatch
        Receives the seconds of each step.

    Returns
    -------
    n_rows : int
        Rows read from the tracks CSVs.
    tracks : pandas.DataFrame
        Kept observations with ``lineage_id``, ``y_clamp`` and ``x_clamp``.
    valid_anchors : pandas.DataFrame
        Rows of ``tracks`` with a same-lineage observation ``tau`` frames later for some ``tau != 0``.
    """
    registry = index.registry
    fovs = index.fovs[:n_fovs]
    with stopwatch.timing("read CSVs"):
        tables = [
            pd.read_csv(
                sorted((Path(registry.get_experiment(fov.experiment).tracks_path) / fov.fov_name).glob("*.csv"))[0]
            )
            for fov in fovs
        ]
    with stopwatch.timing("annotate"):
        for fov, table in zip(fovs, tables, strict=True):
            experiment = registry.get_experiment(fov.experiment)
            table["experiment"] = fov.experiment
            table["condition"] = fov.condition
            table["well_name"] = fov.well_name
            table["fov_name"] = fov.fov_name
            table["global_track_id"] = f"{fov.experiment}_{fov.fov_name}_" + table["track_id"].astype(str)
            table["hours_post_infection"] = experiment.start_hpi + table["t"] * experiment.interval_minutes / 60
            table["_img_height"], table["_img_width"] = fov.shape[3], fov.shape[4]
        tracks = pd.concat(tables, ignore_index=True)
    n_rows = len(tracks)
    with stopwatch.timing("lineage"):
        lineage = {}
        for _, group in tracks.groupby(["experiment", "fov_name"], sort=False):
            global_of_track = dict(zip(group["track_id"], group["global_track_id"], strict=True))
            parent_of = {}
            for _, row in group.iterrows():
                parent = row["parent_track_id"]
                if pd.notna(parent) and int(parent) in global_of_track:
                    parent_of[row["global_track_id"]] = global_of_track[int(parent)]
            for label, row in group.iterrows():
                root, visited = row["global_track_id"], set()
                while root in parent_of and root not in visited:
                    visited.add(root)
                    root = parent_of[root]
                lineage[label] = root
        tracks["lineage_id"] = pd.Series(lineage)
    with stopwatch.timing("border clamp"):
        half_y, half_x = index.yx_patch_size[0] // 2, index.yx_patch_size[1] // 2
        kept, y_clamp, x_clamp = [], [], []
        for label, row in tracks.iterrows():
            height, width, y, x = row["_img_height"], row["_img_width"], row["y"], row["x"]
            if not (0 <= y < height and 0 <= x < width):
                continue
            y_centre = min(max(math.floor(y), half_y), height - half_y)
            x_centre = min(max(math.floor(x), half_x), width - half_x)
            shift = max(abs(y_centre - math.floor(y)), abs(x_centre - math.floor(x)))
            if index.max_border_shift is not None and shift > index.max_border_shift:
                continue
            kept.append(label)
            y_clamp.append(y_centre)
            x_clamp.append(x_centre)
        tracks = tracks.loc[kept].drop(columns=["_img_height", "_img_width"])
        tracks = tracks.assign(y_clamp=y_clamp, x_clamp=x_clamp).reset_index(drop=True)
    with stopwatch.timing("valid anchors"):
        present = set(zip(tracks["experiment"], tracks["lineage_id"], tracks["t"], strict=True))
        tau_ranges = {name: registry.tau_range_frames(name, index.tau_range_hours) for name in registry.names}
        valid = []
        for _, row in tracks.iterrows():
            low, high = tau_ranges[row["experiment"]]
            key = (row["experiment"], row["lineage_id"])
            valid.append(any(tau != 0 and (*key, row["t"] + tau) in present for tau in range(low, high + 1)))
        valid_anchors = tracks[valid].reset_index(drop=True)
    return n_rows, tracks, valid_anchors


def anchor_keys(anchors: pd.DataFrame) -> set[tuple[str, str, int, int]]:
    """Return the ``(experiment, fov_name, track_id, t)`` of each anchor.

    Parameters
    ----------
    anchors : pandas.DataFrame
        Valid anchors.

    Returns
    -------
    set[tuple[str, str, int, int]]
        One key per anchor.
    """
    return set(
        zip(
            anchors["experiment"].astype(str),
            anchors["fov_name"].astype(str),
            anchors["track_id"].astype(np.int64),
            anchors["t"].astype(np.int64),
            strict=True,
        )
    )


def run_index(args: argparse.Namespace, root: Path) -> None:
    """Time MultiExperimentIndex on ~1M rows and the reference's per-row loops on a subsample; print the table.

    Parameters
    ----------
    args : argparse.Namespace
        Command-line options.
    root : Path
        Scratch directory.
    """
    import dynaclr.index as index_module
    from dynaclr.experiment import ExperimentRegistry
    from dynaclr.index import MultiExperimentIndex

    progress(f"index: writing {args.index_experiments} plates (metadata only) and ~{args.index_rows:,} tracks rows")
    start = time.perf_counter()
    experiments, n_rows = write_index_experiments(
        root, args.index_experiments, args.index_rows, args.index_frames, args.index_yx, args.index_fovs_per_well
    )
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    registry = ExperimentRegistry(experiments)
    registry_s = time.perf_counter() - start
    for csv in root.glob("*_tracks/*/*/*/tracks.csv"):
        pd.read_csv(csv)  # warm-up: the page cache and pandas' allocations, so both sides read the same way
    progress("index: building MultiExperimentIndex")
    ours = Stopwatch()
    patches = [
        mock.patch.object(index_module, "read_tracks_csv", ours.wrap("read CSVs", index_module.read_tracks_csv)),
        *(
            mock.patch.object(MultiExperimentIndex, method, ours.wrap(label, getattr(MultiExperimentIndex, method)))
            for method, label in (
                ("_annotate", "annotate"),
                ("_lineage", "lineage"),
                ("_clamp_borders", "border clamp"),
                ("_valid_anchor_mask", "valid anchors"),
            )
        ),
    ]
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        start = time.perf_counter()
        index = MultiExperimentIndex(
            registry,
            z_range=(0, 1),
            yx_patch_size=(args.index_patch, args.index_patch),
            tau_range_hours=TAU_RANGE_HOURS,
        )
        ours.seconds["total"] = time.perf_counter() - start
    ours.seconds["annotate"] -= ours.seconds["lineage"]  # _annotate calls _lineage
    rows_per_fov = n_rows // len(index.fovs)
    n_fovs = min(len(index.fovs), max(1, math.ceil(args.baseline_rows / rows_per_fov)))
    progress(f"index: reference per-row loops on the first {n_fovs} FOVs")
    reference = Stopwatch()
    start = time.perf_counter()
    sub_rows, reference_tracks, reference_anchors = reference_index(index, n_fovs, reference)
    reference.seconds["total"] = time.perf_counter() - start
    in_subset = index.tracks["fov_index"] < n_fovs
    agree = len(reference_tracks) == int(in_subset.sum()) and anchor_keys(reference_anchors) == anchor_keys(
        index.valid_anchors[index.valid_anchors["fov_index"] < n_fovs]
    )
    scale = n_rows / sub_rows

    print(f"## index: MultiExperimentIndex, {len(registry.experiments)} experiments, {len(index.fovs)} FOVs")
    print(
        f"# {n_rows:,} tracks rows ({n_rows // len(index.fovs):,} per FOV, {args.index_frames} frames, "
        f"{args.index_yx}x{args.index_yx} images, intervals {'/'.join(f'{m:g}' for m in INTERVALS_MINUTES)} min); "
        f"patch {args.index_patch}x{args.index_patch}, max_border_shift {index.max_border_shift}, "
        f"tau {TAU_RANGE_HOURS} h -> {len(index.tracks):,} kept rows, {len(index.valid_anchors):,} valid anchors"
    )
    print(f"# written in {write_s:.1f} s; ExperimentRegistry (opens every plate) {registry_s:.2f} s, not in the table")
    print(
        f"# reference: per-row loops on the first {n_fovs} FOVs ({sub_rows:,} rows) measured, times x{scale:.0f} "
        f"extrapolated to {n_rows:,} rows (linear); same kept rows and anchors as the index on those FOVs: "
        f"{'yes' if agree else 'NO'}"
    )
    print(
        "# CSVs read once untimed first (both sides read warm files with pd.read_csv); the reference's 'annotate' "
        "holds its concatenation; 'other' is the index's opening of the plates' positions, concatenation, "
        "RangeIndex resets and anchor selection"
    )
    steps = ["read CSVs", "annotate", "lineage", "border clamp", "valid anchors"]
    ours.seconds["other"] = ours.seconds["total"] - sum(ours.seconds[name] for name in steps)
    ours.seconds["total without CSV reading"] = ours.seconds["total"] - ours.seconds["read CSVs"]
    reference.seconds["total without CSV reading"] = reference.seconds["total"] - reference.seconds["read CSVs"]
    rows = []
    for step in [*steps, "other", "total", "total without CSV reading"]:
        mine = ours.seconds[step]
        if step == "other":
            rows.append([step, f"{mine:.2f}", "-", "-", "-"])
            continue
        theirs = reference.seconds[step]
        rows.append([step, f"{mine:.2f}", f"{theirs:.2f}", f"{theirs * scale:.1f}", f"{theirs * scale / mine:.1f}x"])
    print_table(
        [
            "step",
            f"MultiExperimentIndex, {n_rows:,} rows, s",
            f"reference per-row, {sub_rows:,} rows, s (measured)",
            f"reference, {n_rows:,} rows, s (extrapolated)",
            "speed-up",
        ],
        rows,
    )
    print("# target: 1M rows in a few seconds\n")


# ---------------------------------------------------------------------------------------------------------------------
# getitems: MultiExperimentTripletDataset.__getitems__ against a raw tensorstore read of the same regions
# ---------------------------------------------------------------------------------------------------------------------


def write_two_experiments(root: Path, z_slices: int, yx_size: int, cells_per_fov: int) -> list[dict[str, Any]]:
    """Write two synthetic experiments: GFP and RFP reporters, 30 and 15 minutes per frame, 2 wells x 2 FOVs, 8 frames.

    Parameters
    ----------
    root : Path
        Directory to write into.
    z_slices : int
        Z slices.
    yx_size : int
        Image height and width.
    cells_per_fov : int
        Cells in the first frame of each FOV.

    Returns
    -------
    list[dict]
        :class:`dynaclr.experiment.ExperimentConfig` fields of each experiment.
    """
    from viscy_data.synthetic import write_synthetic_plate

    experiments = []
    for name, reporter, interval in (("2025_07_22_SEC61", "GFP", 30.0), ("2025_08_15_TOMM20", "RFP", 15.0)):
        channels = ["Phase3D", reporter]
        plate = write_synthetic_plate(
            root / name / "plate.zarr",
            channel_names=channels,
            well_conditions={well: condition for condition, wells in WELLS.items() for well in wells},
            fovs_per_well=2,
            n_frames=8,
            z_slices=z_slices,
            yx_size=(yx_size, yx_size),
            cells_per_fov=cells_per_fov,
            cell_radius=8.0,
            step_sigma=3.0,
            interval_minutes=interval,
            seed=len(experiments),
        )
        experiments.append(
            {
                "name": name,
                "data_path": str(plate.store_path),
                "tracks_path": str(plate.tracks_path),
                "channel_names": channels,
                "condition_wells": WELLS,
                "interval_minutes": interval,
            }
        )
    return experiments


def patches_read(dataset: Any, batch: list[int]) -> list[tuple[int, int, int, int]]:
    """Return the patches that ``dataset.__getitems__(batch)`` reads: anchors, positives.

    The positives of a batch are seeded by the batch, so every later read of ``batch`` reads these patches.

    Parameters
    ----------
    dataset : MultiExperimentTripletDataset
        Dataset in fit mode.
    batch : list[int]
        Anchor positions.

    Returns
    -------
    list[tuple[int, int, int, int]]
        ``(fov, t, y, x)`` of the centre of each of the ``2 * len(batch)`` patches.
    """
    captured: list[Any] = []
    read = dataset._reader.read

    def spy(patch_sets: list[Any]) -> Any:
        captured.extend(patch_sets)
        return read(patch_sets)

    with mock.patch.object(dataset._reader, "read", spy):
        dataset.__getitems__(batch)
    return [tuple(patch) for locations in captured for patch in zip(*(c.tolist() for c in locations), strict=True)]


def run_getitems(args: argparse.Namespace, root: Path) -> None:
    """Compare ``__getitems__`` with a raw tensorstore batch read of the same patches; print the table.

    Parameters
    ----------
    args : argparse.Namespace
        Command-line options.
    root : Path
        Scratch directory.
    """
    import tensorstore as ts

    from dynaclr.dataset import MultiExperimentTripletDataset
    from dynaclr.experiment import ExperimentRegistry
    from dynaclr.index import MultiExperimentIndex
    from viscy_data.ome_compat import open_tensorstore, tensorstore_context

    progress("getitems: writing 2 synthetic experiments")
    start = time.perf_counter()
    registry = ExperimentRegistry(write_two_experiments(root, args.getitems_z, args.getitems_yx, args.getitems_cells))
    write_s = time.perf_counter() - start
    z_range, patch = (0, args.getitems_z), args.getitems_patch
    index = MultiExperimentIndex(
        registry, z_range=z_range, yx_patch_size=(patch, patch), tau_range_hours=TAU_RANGE_HOURS
    )
    dataset = MultiExperimentTripletDataset(index, fit=True, tau_range_hours=TAU_RANGE_HOURS, cache_pool_bytes=0)
    order = np.random.default_rng(0).permutation(len(dataset))
    n_batches = min(args.getitems_batches, len(dataset) // args.getitems_batch_size)
    if n_batches < 1:
        raise SystemExit(f"only {len(dataset)} anchors, fewer than one batch of {args.getitems_batch_size}")
    batches = [
        order[i * args.getitems_batch_size : (i + 1) * args.getitems_batch_size].tolist() for i in range(n_batches)
    ]
    context = tensorstore_context(0)
    stores = [open_tensorstore(position["0"], context=context) for position in index.positions]
    regions = {
        number: [(fov, t, y - patch // 2, x - patch // 2) for fov, t, y, x in patches_read(dataset, batch)]
        for number, batch in enumerate(batches)
    }
    shape = (len(CHANNELS), args.getitems_z, patch, patch)

    def dataset_read(number: int) -> dict[str, Any]:
        return dataset.__getitems__(batches[number])

    def raw_read(number: int) -> np.ndarray:
        wanted = regions[number]
        out = np.empty((len(wanted), *shape), dtype=np.float32)
        destination = ts.array(out, copy=False, write=True)
        with ts.Batch() as read_batch:
            futures = [
                destination[slot].write(
                    stores[fov][t, :, z_range[0] : z_range[1], y : y + patch, x : x + patch], batch=read_batch
                )
                for slot, (fov, t, y, x) in enumerate(wanted)
            ]
        for future in futures:
            future.result()
        return out

    functions = {
        "MultiExperimentTripletDataset.__getitems__": dataset_read,
        "raw tensorstore, one batch array": raw_read,
    }
    same = True  # and warm up both
    for number in range(n_batches):
        sample = dataset_read(number)
        same &= np.array_equal(torch.cat([sample["anchor"], sample["positive"]]).numpy(), raw_read(number))
    progress(f"getitems: {args.getitems_rounds} rounds over {n_batches} batches")
    samples: dict[str, list[float]] = {name: [] for name in functions}
    names = list(functions)
    for round_index in range(args.getitems_rounds):
        shift = round_index % len(names)
        for number in range(n_batches):
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                functions[name](number)
                samples[name].append(time.perf_counter() - start)

    patches = 2 * args.getitems_batch_size
    best = {name: patches / min(seconds) for name, seconds in samples.items()}
    median = {name: patches / statistics.median(seconds) for name, seconds in samples.items()}
    raw = "raw tensorstore, one batch array"
    print("## getitems: MultiExperimentTripletDataset.__getitems__ (fit: anchor + positive)")
    print(
        f"# 2 experiments x 4 FOVs x 8 frames x {len(CHANNELS)} ch x {args.getitems_z} z x {args.getitems_yx}x"
        f"{args.getitems_yx} float32 (one ZYX stack per chunk), written in {write_s:.1f} s; {len(dataset)} anchors"
    )
    print(
        f"# batches of {args.getitems_batch_size} anchors + {args.getitems_batch_size} positives, {len(CHANNELS)}x"
        f"{args.getitems_z}x{patch}x{patch} patches, no chunk cache; {args.getitems_rounds} rounds over {n_batches} "
        f"batches, timed back to back in rotating order; same pixels as the raw read: {'yes' if same else 'NO'}"
    )
    print_table(
        ["method", "patches/s (best)", "patches/s (median)", "vs raw (best)", "vs raw (median)"],
        [
            [
                name + (" (baseline)" if name == raw else ""),
                f"{best[name]:.0f}",
                f"{median[name]:.0f}",
                f"{best[name] / best[raw]:.0%}",
                f"{median[name] / median[raw]:.0%}",
            ]
            for name in functions
        ],
    )
    print("# target: at least 80% of raw\n")


# ---------------------------------------------------------------------------------------------------------------------
# sampler: FlexibleBatchSampler against the reference's algorithm and a plain shuffle
# ---------------------------------------------------------------------------------------------------------------------


def make_anchors(n_anchors: int, seed: int = 0) -> pd.DataFrame:
    """Random anchors: experiments of uneven sizes, 30% infected, HPI on a 30 min grid over 0-48 h.

    Parameters
    ----------
    n_anchors : int
        Rows.
    seed : int
        Seed.

    Returns
    -------
    pandas.DataFrame
        Columns ``experiment``, ``condition``, ``hours_post_infection`` and ``global_track_id``.
    """
    rng = np.random.default_rng(seed)
    sizes = rng.dirichlet(np.full(EXPERIMENTS, 2.0))
    names = np.array([f"2025_{i:02d}_experiment" for i in range(EXPERIMENTS)], dtype=object)
    return pd.DataFrame(
        {
            "experiment": names[rng.choice(EXPERIMENTS, n_anchors, p=sizes)],
            "condition": np.where(rng.random(n_anchors) < 0.3, "infected", "uninfected").astype(object),
            "hours_post_infection": rng.integers(0, 97, n_anchors) * 0.5,
            "global_track_id": rng.integers(0, n_anchors // 20, n_anchors),
        }
    )


class ReferenceAlgorithm:
    """The reference's per-batch algorithm (all axes on), as spec §3.8 describes it: the baseline."""

    def __init__(self, anchors: pd.DataFrame, batch_size: int, seed: int = 0) -> None:
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        groups = anchors.groupby("experiment").groups
        self.experiments = {name: np.asarray(labels) for name, labels in groups.items()}
        self.names = list(self.experiments)
        sizes = np.array([len(self.experiments[name]) for name in self.names], dtype=float)
        self.probabilities = sizes / sizes.sum()
        self.strata = {
            key: np.asarray(labels) for key, labels in anchors.groupby(["experiment", "condition"]).groups.items()
        }
        self.hpi = anchors["hours_post_infection"].to_numpy()
        self.total_batches = len(anchors) // batch_size

    def batch(self) -> list[int]:
        """One batch: an experiment, its temporally enriched part, then the leak from all other experiments."""
        rng = self.rng
        chosen = rng.choice(self.names, p=self.probabilities)
        n_leak = int(self.batch_size * LEAKY)
        other = np.concatenate([labels for name, labels in self.experiments.items() if name != chosen])
        leak = rng.choice(other, n_leak, replace=len(other) < n_leak)
        primary = self.enrich_temporal(self.experiments[chosen], self.batch_size - n_leak)
        return np.concatenate([primary, leak]).tolist()

    def enrich_temporal(self, pool: np.ndarray, n: int) -> np.ndarray:
        """Draw ``n`` of ``pool``: a focal window around one of its HPI values, the rest outside it."""
        hpi = self.hpi[pool]
        focal = self.rng.choice(np.unique(hpi))
        near = np.abs(hpi - focal) <= WINDOW_HOURS
        focal_pool, global_pool = pool[near], pool[~near]
        n_global = int(n * GLOBAL_FRACTION)
        focal_part = self.rng.choice(focal_pool, n - n_global, replace=len(focal_pool) < n - n_global)
        global_part = self.rng.choice(global_pool, n_global, replace=len(global_pool) < n_global)
        return np.concatenate([focal_part, global_part])


def time_iterator(
    build: Callable[[], object], batches: Callable[[object], Iterator[list[int]]], n: int
) -> tuple[float, float, list[float]]:
    """Time the construction, the first batch and each of the next ``n`` batches, in seconds.

    Parameters
    ----------
    build : Callable
        Builds the sampler.
    batches : Callable
        Iterator of batches of a sampler.
    n : int
        Batches timed after the first.

    Returns
    -------
    tuple[float, float, list[float]]
        Construction seconds, seconds to the first batch, seconds of each later batch.
    """
    start = time.perf_counter()
    sampler = build()
    built = time.perf_counter()
    iterator = batches(sampler)
    next(iterator)
    first = time.perf_counter()
    times = []
    for _ in range(n):
        start_batch = time.perf_counter()
        next(iterator)
        times.append(time.perf_counter() - start_batch)
    return built - start, first - built, times


def reference_batches(sampler: ReferenceAlgorithm) -> Iterator[list[int]]:
    """Endless batches of the reference's algorithm.

    Parameters
    ----------
    sampler : ReferenceAlgorithm
        The baseline.

    Yields
    ------
    list[int]
        Anchor positions of one batch.
    """
    while True:
        yield sampler.batch()


def run_sampler(args: argparse.Namespace) -> None:
    """Time FlexibleBatchSampler, the reference's algorithm and a plain shuffle on ``args.anchors``; print the table.

    Parameters
    ----------
    args : argparse.Namespace
        Command-line options.
    """
    progress(f"sampler: {args.anchors:,} anchors, {args.batches} batches per method")
    start = time.perf_counter()
    anchors = make_anchors(args.anchors)
    print("## sampler: FlexibleBatchSampler")
    print(f"# {len(anchors):,} anchors, {EXPERIMENTS} experiments, made in {time.perf_counter() - start:.1f} s")
    print(
        f"# batch {BATCH_SIZE}; all axes: experiment-aware (weights), condition-balanced, temporal enrichment "
        f"(+-{WINDOW_HOURS} h, global {GLOBAL_FRACTION}), leaky {LEAKY}; ms per batch: mean (median) over "
        f"{args.batches} batches after the first"
    )
    weights = {name: 1.0 + i % 3 for i, name in enumerate(sorted(anchors["experiment"].unique()))}
    all_axes = {
        "batch_size": BATCH_SIZE,
        "leaky": LEAKY,
        "experiment_weights": weights,
        "temporal_enrichment": True,
        "temporal_window_hours": WINDOW_HOURS,
        "temporal_global_fraction": GLOBAL_FRACTION,
    }
    methods: dict[str, tuple[Callable[[], object], Callable[[object], Iterator[list[int]]]]] = {
        "FlexibleBatchSampler, all axes": (lambda: FlexibleBatchSampler(anchors, **all_axes), iter),
        "FlexibleBatchSampler, all axes, rank 3 of 8": (
            lambda: FlexibleBatchSampler(anchors, num_replicas=8, rank=3, **all_axes),
            iter,
        ),
        "FlexibleBatchSampler, no axis": (
            lambda: FlexibleBatchSampler(
                anchors, batch_size=BATCH_SIZE, experiment_aware=False, condition_balanced=False
            ),
            iter,
        ),
        "reference algorithm, all axes (baseline)": (
            lambda: ReferenceAlgorithm(anchors, BATCH_SIZE),
            reference_batches,
        ),
        "torch BatchSampler(RandomSampler), no axis": (
            lambda: BatchSampler(RandomSampler(range(len(anchors))), BATCH_SIZE, drop_last=True),
            iter,
        ),
    }
    results = {name: time_iterator(build, batches, args.batches) for name, (build, batches) in methods.items()}
    reference_ms = 1e3 * statistics.mean(results["reference algorithm, all axes (baseline)"][2])
    total_batches = len(anchors) // BATCH_SIZE
    rows = []
    for name, (init_s, first_s, times) in results.items():
        mean_ms, median_ms = 1e3 * statistics.mean(times), 1e3 * statistics.median(times)
        if name.startswith("reference"):
            first = f"{total_batches * mean_ms / 1e3:.1f} (eager epoch, extrapolated)"
        else:
            first = f"{first_s:.4f}"
        rows.append(
            [name, f"{init_s:.2f}", first, f"{mean_ms:.3f} ({median_ms:.3f})", f"{reference_ms / mean_ms:.1f}x"]
        )
    print_table(["method", "init s", "first batch s", "ms per batch", "vs reference"], rows)
    print("# targets: init < 2 s, < 0.3 ms per batch\n")


# ---------------------------------------------------------------------------------------------------------------------
# training: a fit of the multi-experiment config, data time against compute time, and random tensors as the baseline
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingRun:
    """Sizes and settings of one training configuration.

    Attributes
    ----------
    label : str
        Name in the table.
    accelerator : str
        Lightning accelerator, ``"cpu"`` or ``"gpu"``.
    precision : str
        Lightning precision.
    backbone : str
        ContrastiveEncoder backbone.
    z : int
        Z slices of a patch.
    initial : int
        YX read around each cell.
    final : int
        YX after the final crop (the model's input).
    batch : int
        Anchors per batch.
    warmup : int
        Untimed steps first (at least 1).
    steps : int
        Timed steps.
    num_workers : int
        Loader threads.
    """

    label: str
    accelerator: str
    precision: str
    backbone: str
    z: int
    initial: int
    final: int
    batch: int
    warmup: int
    steps: int
    num_workers: int

    def describe(self) -> str:
        """One-line description of the sizes."""
        return (
            f"{self.backbone}, {self.z} z, {self.initial}x{self.initial} -> {self.final}x{self.final}, "
            f"batch {self.batch}, {self.precision}"
        )


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``, mapping by mapping, as LightningCLI merges ``-c`` files.

    Parameters
    ----------
    base, override : dict
        Configs.

    Returns
    -------
    dict
        A new config.
    """
    result = dict(base)
    for key, value in override.items():
        result[key] = (
            merged(result[key], value) if isinstance(value, dict) and isinstance(result.get(key), dict) else value
        )
    return result


def build_training(
    config: dict[str, Any], run: TrainingRun, experiments_yaml: Path, val_experiments: list[str]
) -> tuple[Any, Any]:
    """Build the ContrastiveModule and MultiExperimentDataModule of ``config`` at the sizes of ``run``.

    Parameters
    ----------
    config : dict
        LightningCLI fit config with ``model`` and ``data``.
    run : TrainingRun
        Sizes.
    experiments_yaml : Path
        Experiments of the data module.
    val_experiments : list[str]
        Experiments held out (built, not run: validation is off).

    Returns
    -------
    tuple
        ``(module, datamodule)``.
    """
    from lightning.pytorch import seed_everything

    model = yaml.safe_load(yaml.safe_dump(config["model"]))  # deep copy
    encoder = model["init_args"]["encoder"]["init_args"]
    encoder.update(backbone=run.backbone, in_stack_depth=run.z)
    model["init_args"]["example_input_array_shape"] = [1, encoder["in_channels"], run.z, run.final, run.final]
    data = yaml.safe_load(yaml.safe_dump(config["data"]))
    data["init_args"].update(
        experiments_yaml=str(experiments_yaml),
        z_range=[0, run.z],
        yx_patch_size=[run.initial, run.initial],
        final_yx_patch_size=[run.final, run.final],
        val_experiments=val_experiments,
        batch_size=run.batch,
        num_workers=run.num_workers,
    )
    seed_everything(0, verbose=False)
    return instantiate(model), instantiate(data)


class StepTimer(Callback):
    """Split each training step after ``warmup`` into data time and compute time.

    Data time runs from the end of the previous step to ``on_train_batch_start`` (loader wait, transfer,
    ``on_after_batch_transfer``, Lightning's bookkeeping); compute time from ``on_train_batch_start`` to
    ``on_train_batch_end`` (forward, backward, optimizer step). The data module's
    ``on_after_batch_transfer`` is also timed on its own. On CUDA the device is synchronized at each
    boundary, so each part is charged its own device time.

    Parameters
    ----------
    warmup : int
        Untimed steps first (at least 1: the first step's data wait includes the loader's start).
    """

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.data: list[float] = []
        self.transform: list[float] = []
        self.compute: list[float] = []
        self._steps = 0
        self._last_end = self._start = self._transform = 0.0
        self._sync: Callable[[], None] = lambda: None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Time the data module's ``on_after_batch_transfer``."""
        if trainer.strategy.root_device.type == "cuda":
            self._sync = torch.cuda.synchronize
        datamodule = trainer.datamodule
        if datamodule is None:
            return
        after = datamodule.on_after_batch_transfer

        @functools.wraps(after)
        def timed(batch: Any, dataloader_idx: int) -> Any:
            self._sync()
            start = time.perf_counter()
            batch = after(batch, dataloader_idx)
            self._sync()
            self._transform = time.perf_counter() - start
            return batch

        datamodule.on_after_batch_transfer = timed

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Remove the wrapper (the class's method shows through again)."""
        if trainer.datamodule is not None:
            vars(trainer.datamodule).pop("on_after_batch_transfer", None)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the clock of the first data wait."""
        if self._steps == 0:
            self._last_end = time.perf_counter()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        """Mark the start of compute: the batch is on the device and transformed."""
        self._sync()
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Record the step's parts, after the warm-up steps."""
        self._sync()
        end = time.perf_counter()
        if self._steps >= self.warmup:
            self.data.append(self._start - self._last_end)
            self.transform.append(self._transform)
            self.compute.append(end - self._start)
        self._steps += 1
        self._last_end, self._transform = end, 0.0


class FixedBatches:
    """The same batch of random tensors ``n`` times: a loader without reads.

    Parameters
    ----------
    run : TrainingRun
        Sizes of the batch (the model's input: after the final crop).
    device : torch.device
        Where the tensors live.
    n : int
        Batches.
    """

    def __init__(self, run: TrainingRun, device: torch.device, n: int) -> None:
        generator = torch.Generator().manual_seed(0)
        shape = (run.batch, len(CHANNELS), run.z, run.final, run.final)
        self.batch = {view: torch.randn(shape, generator=generator).to(device) for view in ("anchor", "positive")}
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return (self.batch for _ in range(self.n))


def fit(module: LightningModule, run: TrainingRun, datamodule: Any = None) -> StepTimer:
    """Fit ``module`` for ``run.warmup + run.steps`` steps on the data module, or on random tensors without one.

    Parameters
    ----------
    module : LightningModule
        The ContrastiveModule.
    run : TrainingRun
        Sizes and settings.
    datamodule : MultiExperimentDataModule, optional
        The data; None fits on :class:`FixedBatches`.

    Returns
    -------
    StepTimer
        The timed steps.
    """
    timer = StepTimer(run.warmup)
    trainer = Trainer(
        accelerator=run.accelerator,
        devices=1,
        precision=run.precision,
        max_epochs=100,  # the config's WarmupCosine schedule needs max_epochs; max_steps ends the fit
        max_steps=run.warmup + run.steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    if datamodule is None:
        device = torch.device("cuda" if run.accelerator == "gpu" else "cpu")
        trainer.fit(module, train_dataloaders=FixedBatches(run, device, run.warmup + run.steps))
    else:
        trainer.fit(module, datamodule=datamodule)
    if len(timer.compute) < run.steps:
        raise SystemExit(f"{run.label}: only {len(timer.compute)} of {run.steps} timed steps ran")
    return timer


def training_rows(config: dict[str, Any], run: TrainingRun, experiments_yaml: Path, val: list[str]) -> list[list[str]]:
    """Fit the random-tensor baseline and the data module at the sizes of ``run``; the table rows of both.

    Parameters
    ----------
    config : dict
        LightningCLI fit config.
    run : TrainingRun
        Sizes and settings.
    experiments_yaml : Path
        Experiments of the data module.
    val : list[str]
        Experiments held out.

    Returns
    -------
    list[list[str]]
        Rows: random tensors (baseline), then the data module.
    """
    rows, baseline = [], 0.0
    names = {
        False: "random tensors, no reads (baseline)",
        True: f"MultiExperimentDataModule, num_workers={run.num_workers}",
    }
    for reads, name in names.items():
        progress(f"training: {run.label}, {name}")
        module, datamodule = build_training(config, run, experiments_yaml, val)
        timer = fit(module, run, datamodule if reads else None)
        steps = [data + compute for data, compute in zip(timer.data, timer.compute, strict=True)]
        samples = run.batch / statistics.median(steps)
        baseline = baseline or samples
        data_ms, compute_ms = 1e3 * statistics.median(timer.data), 1e3 * statistics.median(timer.compute)
        rows.append(
            [
                f"{run.label}: {name}",
                f"{samples:.1f}",
                f"{data_ms:.1f}",
                f"{1e3 * statistics.median(timer.transform):.1f}" if reads else "-",
                f"{compute_ms:.1f}",
                f"{data_ms / (data_ms + compute_ms):.0%}",
                f"{samples / baseline:.2f}x",
                f"{samples / REFERENCE_SAMPLES_PER_GPU:.2f}x" if run.accelerator == "gpu" else "-",
            ]
        )
        del module, datamodule, timer
        if run.accelerator == "gpu":
            torch.cuda.empty_cache()
    return rows


def run_training(args: argparse.Namespace, root: Path) -> None:
    """Fit the multi-experiment config on CPU at reduced size (and at full size with CUDA); print the table.

    Parameters
    ----------
    args : argparse.Namespace
        Command-line options.
    root : Path
        Scratch directory.
    """
    from dynaclr.example_experiments import write_example_experiments

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    for message in (
        ".*does not have many workers.*",
        ".*smaller than the logging interval.*",
        ".*but have no `val_dataloader`.*",
        ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
        ".*on_after_batch_transfer.*",
    ):
        warnings.filterwarnings("ignore", message=message)
    base = yaml.safe_load((CONFIGS / "multi_experiment_fit.yml").read_text())
    cpu_config = merged(base, yaml.safe_load((CONFIGS / "multi_experiment_fit_synthetic_cpu.yml").read_text()))
    progress("training: writing the example experiments")
    experiments_yaml = write_example_experiments(root / "examples")
    cpu = TrainingRun(
        label="CPU, reduced",
        accelerator="cpu",
        precision="32-true",
        backbone=cpu_config["model"]["init_args"]["encoder"]["init_args"]["backbone"],
        z=args.training_z,
        initial=args.training_patch[0],
        final=args.training_patch[1],
        batch=args.training_batch_size,
        warmup=args.training_warmup,
        steps=args.training_steps,
        num_workers=args.training_workers,
    )
    val = list(cpu_config["data"]["init_args"]["val_experiments"])
    threads = torch.get_num_threads()
    torch.set_num_threads(args.training_threads)
    rows = training_rows(cpu_config, cpu, experiments_yaml, val)
    torch.set_num_threads(threads)
    notes = [
        f"# {cpu.label}: multi_experiment_fit.yml + multi_experiment_fit_synthetic_cpu.yml, {cpu.describe()}, "
        f"torch {args.training_threads} thread(s); example experiments (val {', '.join(val)} built, not run)"
    ]
    if torch.cuda.is_available():
        gpu = TrainingRun(
            label="GPU, full size",
            accelerator="gpu",
            precision="bf16-mixed",
            backbone=base["model"]["init_args"]["encoder"]["init_args"]["backbone"],
            z=args.gpu_z,
            initial=args.gpu_patch[0],
            final=args.gpu_patch[1],
            batch=args.gpu_batch_size,
            warmup=args.gpu_warmup,
            steps=args.gpu_steps,
            num_workers=args.gpu_workers,
        )
        progress(f"training: writing 2 experiments of {args.gpu_z} z x {gpu.initial + 128}^2 for the full size")
        experiments = write_two_experiments(root / "full", gpu.z, gpu.initial + 128, args.gpu_cells)
        full_yaml = root / "full" / "experiments.yml"
        full_yaml.write_text(yaml.safe_dump({"experiments": experiments}, sort_keys=False))
        rows += training_rows(base, gpu, full_yaml, [])
        rows.append(
            [f"{gpu.label}: reference, stated (baseline)", f"{REFERENCE_SAMPLES_PER_GPU:.0f}"] + ["-"] * 5 + ["1.00x"]
        )
        notes.append(
            f"# {gpu.label}: multi_experiment_fit.yml, {gpu.describe()}, {torch.cuda.get_device_name()}; 2 synthetic "
            f"experiments, {args.gpu_cells} cells/FOV, no validation"
        )
    else:
        rows.append(["GPU, full size (bf16-mixed, convnext_tiny)", "skipped: torch.cuda.is_available() is False"])
    print("## training: ContrastiveModule + NTXentHCL through MultiExperimentDataModule")
    print("\n".join(notes))
    print(
        f"# {cpu.warmup} warm-up + {cpu.steps} timed steps per row (GPU: {args.gpu_warmup} + {args.gpu_steps}); "
        "ms are medians per step and samples/s is the batch over the median step (data + compute), robust to a "
        "shared machine; samples/s counts anchors, on one device; data share = data / (data + compute)"
    )
    print_table(
        [
            "run",
            "samples/s",
            "data ms",
            "of which on_after_batch_transfer ms",
            "compute ms",
            "data share",
            "vs random tensors",
            f"vs reference {REFERENCE_SAMPLES_PER_GPU:.0f}/s/GPU",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", nargs="+", choices=(*PARTS, "all"), default=["all"], help="parts to run")
    group = parser.add_argument_group("index")
    group.add_argument("--index-rows", type=int, default=1_000_000, help="tracks rows over all FOVs")
    group.add_argument("--index-experiments", type=int, default=EXPERIMENTS)
    group.add_argument("--index-fovs-per-well", type=int, default=2, help="FOVs in each of the 2 wells")
    group.add_argument("--index-frames", type=int, default=48)
    group.add_argument("--index-yx", type=int, default=1024, help="image size (metadata only)")
    group.add_argument("--index-patch", type=int, default=64, help="yx_patch_size")
    group.add_argument("--baseline-rows", type=int, default=20_000, help="rows (whole FOVs) of the per-row baseline")
    group = parser.add_argument_group("getitems")
    group.add_argument("--getitems-batch-size", type=int, default=64, help="anchors per batch")
    group.add_argument("--getitems-batches", type=int, default=4)
    group.add_argument("--getitems-rounds", type=int, default=5)
    group.add_argument("--getitems-patch", type=int, default=128, help="YX of a patch")
    group.add_argument("--getitems-z", type=int, default=5)
    group.add_argument("--getitems-yx", type=int, default=256, help="image size")
    group.add_argument("--getitems-cells", type=int, default=24, help="cells per FOV")
    group = parser.add_argument_group("sampler")
    group.add_argument("--anchors", type=int, default=2_000_000)
    group.add_argument("--batches", type=int, default=200)
    group = parser.add_argument_group("training")
    group.add_argument("--training-batch-size", type=int, default=16)
    group.add_argument("--training-z", type=int, default=5)
    group.add_argument("--training-patch", type=int, nargs=2, default=[48, 32], metavar=("READ", "FINAL"))
    group.add_argument("--training-warmup", type=int, default=2)
    group.add_argument("--training-steps", type=int, default=8)
    group.add_argument("--training-workers", type=int, default=1, help="loader threads")
    group.add_argument(
        "--training-threads",
        type=int,
        default=1,
        help="torch CPU threads of the CPU fits (1: far less at the mercy of a busy machine than OpenMP spinning)",
    )
    group.add_argument("--gpu-batch-size", type=int, default=64, help="full size, with CUDA only")
    group.add_argument("--gpu-z", type=int, default=30)
    group.add_argument("--gpu-patch", type=int, nargs=2, default=[384, 160], metavar=("READ", "FINAL"))
    group.add_argument("--gpu-warmup", type=int, default=3)
    group.add_argument("--gpu-steps", type=int, default=10)
    group.add_argument("--gpu-workers", type=int, default=4, help="loader threads")
    group.add_argument("--gpu-cells", type=int, default=64, help="cells per FOV of the full-size plates")
    args = parser.parse_args()
    if min(args.training_warmup, args.training_steps, args.gpu_warmup, args.gpu_steps) < 1:
        parser.error("warm-up and timed steps must be at least 1")
    parts = PARTS if "all" in args.part else [part for part in PARTS if part in args.part]
    logging.getLogger("dynaclr").setLevel(logging.ERROR)
    logging.getLogger("viscy_data").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="viscy-multi-experiment-bench-") as tmp:
        for part in parts:
            root = Path(tmp) / part
            root.mkdir()
            if part == "index":
                run_index(args, root)
            elif part == "getitems":
                run_getitems(args, root)
            elif part == "sampler":
                run_sampler(args)
            else:
                run_training(args, root)
    progress("done")


if __name__ == "__main__":
    main()
