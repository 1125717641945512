"""TripletDataset batched reads against the raw tensorstore ceiling and naive per-patch zarr reads.

Writes a synthetic plate (2 channels, 15 Z slices), then reads the same batches of 64
anchors + 64 positives (256 x 256 initial patches) three ways, in the same run:

- ``TripletDataset.__getitems__``: what the training loop does;
- raw tensorstore: the same regions read directly in one tensorstore batch, either into one
  batch array or into one array per patch; the faster is the ceiling for this path;
- naive zarr: one ``oindex`` read per patch through iohub.

Run on both a cold (no chunk cache) and a warm (2 GiB chunk cache) tensorstore context.

Run: ``uv run python benchmarks/data.py [--workdir DIR] [--cache-pool-mib N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorstore as ts

from viscy_data.ome_compat import open_ome_zarr, open_tensorstore, tensorstore_context
from viscy_data.synthetic import write_synthetic_plate
from viscy_data.tracks import read_tracks_csv
from viscy_data.triplet import TripletDataset

BATCH_SIZE = 64
PATCH = (256, 256)
Z_SLICES = 15
CHANNELS = ("Phase3D", "GFP")


def build_plate(workdir: Path):
    store = workdir / "bench.zarr"
    if store.exists():
        return store, workdir / "tracks"
    write_synthetic_plate(
        store,
        channel_names=CHANNELS,
        well_conditions={"A/1": "uninfected", "A/2": "infected", "B/1": "infected"},
        fovs_per_well=2,
        n_frames=4,
        z_slices=Z_SLICES,
        yx_size=(640, 640),
        cells_per_fov=60,
        cell_radius=8.0,
        step_sigma=3.0,
        division_probability=0.0,
        chunks=(1, 1, Z_SLICES, 256, 256),
        seed=0,
    )
    return store, workdir / "tracks"


def batch_regions(dataset: TripletDataset, batch: list[int]) -> list[tuple[str, int, slice, slice]]:
    """FOV, t and YX slices of the anchors of a batch and of their positives one frame later."""
    anchors = dataset.valid_anchors.iloc[batch]
    by_cell = dataset.tracks.set_index(["global_track_id", "t"])
    positives = by_cell.loc[list(zip(anchors["global_track_id"], anchors["t"] + 1, strict=True))].reset_index()
    half_y, half_x = PATCH[0] // 2, PATCH[1] // 2
    return [
        (row.fov_name, int(row.t), slice(row.y - half_y, row.y + half_y), slice(row.x - half_x, row.x + half_x))
        for rows in (anchors, positives)
        for row in rows.itertuples()
    ]


def interleaved_samples(functions: dict, batches: list, rounds: int) -> dict[str, list[float]]:
    """Seconds per batch of each function, timed back to back in rotating order, batch by batch."""
    samples: dict[str, list[float]] = {name: [] for name in functions}
    names = list(functions)
    for round_index in range(rounds):
        shift = round_index % len(names)
        for batch in batches:
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                functions[name](batch)
                samples[name].append(time.perf_counter() - start)
    return samples


def measure(plate, positions, tables, cache_mib: int, n_batches: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per batch of each read path, with a tensorstore chunk cache of ``cache_mib``."""
    dataset = TripletDataset(
        positions,
        tables,
        channel_names=list(CHANNELS),
        initial_yx_patch_size=PATCH,
        z_range=slice(0, Z_SLICES),
        time_interval=1,
        return_negative=False,
        cache_pool_bytes=cache_mib << 20,
    )
    order = np.random.default_rng(0).permutation(len(dataset))
    n_batches = min(n_batches, len(dataset) // BATCH_SIZE)
    batches = [order[i * BATCH_SIZE : (i + 1) * BATCH_SIZE].tolist() for i in range(n_batches)]
    regions = {tuple(batch): batch_regions(dataset, batch) for batch in batches}
    context = tensorstore_context(cache_mib << 20)
    stores = {name: open_tensorstore(position["0"], context=context) for name, position in plate.positions()}
    images = {name: position["0"] for name, position in plate.positions()}

    def dataset_read(batch):
        sample = dataset.__getitems__(batch)
        return sample["anchor"], sample["positive"]

    def raw_batch_array(batch):
        wanted = regions[tuple(batch)]
        out = np.empty((len(wanted), len(CHANNELS), Z_SLICES, *PATCH), dtype=np.float32)
        destination = ts.array(out, copy=False, write=True)
        with ts.Batch() as batch_read:
            futures = [
                destination[i].write(stores[f][t, :, :, ys, xs], batch=batch_read)
                for i, (f, t, ys, xs) in enumerate(wanted)
            ]
        for future in futures:
            future.result()
        return out

    def raw_array_per_patch(batch):
        with ts.Batch() as batch_read:
            futures = [stores[f][t, :, :, ys, xs].read(batch=batch_read) for f, t, ys, xs in regions[tuple(batch)]]
        return [future.result() for future in futures]

    def naive_zarr(batch):
        return [images[f].oindex[t, [0, 1], :, ys, xs] for f, t, ys, xs in regions[tuple(batch)]]

    functions = {
        "TripletDataset.__getitems__": dataset_read,
        "raw tensorstore, one batch array": raw_batch_array,
        "raw tensorstore, one array per patch": raw_array_per_patch,
    }
    for function in functions.values():
        for batch in batches:
            function(batch)  # warm up: open stores, fill the page (and chunk) cache
    naive_zarr(batches[0])
    samples = interleaved_samples(functions, batches, rounds)
    samples["naive per-patch zarr (iohub oindex)"] = interleaved_samples({"naive": naive_zarr}, batches[:1], 1)["naive"]
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cache-pool-mib", type=int, nargs="+", default=[0, 2048])
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="viscy-data-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    store_path, tracks_path = build_plate(workdir)
    print(f"plate {store_path} ready in {time.perf_counter() - start:.1f} s")

    plate = open_ome_zarr(store_path, layout="hcs", mode="r")
    positions = [position for _, position in plate.positions()]
    tables = [read_tracks_csv(tracks_path / name, f"FOV {name}") for name, _ in plate.positions()]
    print(
        f"\n{len(positions)} FOVs, batches of {BATCH_SIZE} anchors + {BATCH_SIZE} positives, {len(CHANNELS)} channels, "
        f"{Z_SLICES} z, {PATCH[0]}x{PATCH[1]} patches, float32; {args.rounds} rounds over {args.batches} batches"
    )
    print("patches/s from the best and the median time per batch; methods timed back to back in rotating order")
    print(f"{'cache pool':>10} | {'method':<36} | {'best':>8} | {'median':>8} | {'best vs best raw':>16}")
    print("-" * 92)
    patches = 2 * BATCH_SIZE
    for cache_mib in args.cache_pool_mib:
        samples = measure(plate, positions, tables, cache_mib, args.batches, args.rounds)
        best = {name: patches / min(seconds) for name, seconds in samples.items()}
        ceiling = max(best["raw tensorstore, one batch array"], best["raw tensorstore, one array per patch"])
        for name, seconds in samples.items():
            median = patches / statistics.median(seconds)
            print(
                f"{cache_mib:>6} MiB | {name:<36} | {best[name]:>8.1f} | {median:>8.1f} | {best[name] / ceiling:>16.0%}"
            )


if __name__ == "__main__":
    main()
