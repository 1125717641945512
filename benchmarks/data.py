"""TripletDataset batched reads against the raw tensorstore ceiling and naive per-patch zarr reads.

Writes a synthetic plate (2 channels, 15 Z slices), then reads the same batches of 64
anchors + 64 positives (256 x 256 initial patches) three ways, in the same run:

- ``TripletDataset.__getitems__``: what the training loop does;
- raw tensorstore: the same regions read directly, all at once (the ceiling for this path);
- naive zarr: one ``oindex`` read per patch through iohub.

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

from viscy_data._ome_compat import open_ome_zarr, open_tensorstore
from viscy_data.synthetic import write_synthetic_plate
from viscy_data.triplet import TripletDataset, _tensorstore_context, read_tracks_csv

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


def regions_of(dataset: TripletDataset, rows: np.ndarray):
    half_y, half_x = PATCH[0] // 2, PATCH[1] // 2
    for row in rows:
        y, x, t = int(dataset._row_y[row]), int(dataset._row_x[row]), int(dataset._row_t[row])
        yield int(dataset._row_position[row]), t, slice(y - half_y, y + half_y), slice(x - half_x, x + half_x)


def timed(function, batches, rounds):
    samples = []
    for _ in range(rounds):
        for batch in batches:
            start = time.perf_counter()
            function(batch)
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-pool-mib", type=int, nargs="+", default=[0, 2048])
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="viscy-data-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    store_path, tracks_path = build_plate(workdir)
    print(f"plate {store_path} ready in {time.perf_counter() - start:.1f} s")

    plate = open_ome_zarr(store_path, layout="hcs", mode="r")
    positions = [position for _, position in plate.positions()]
    tables = [read_tracks_csv(tracks_path / name) for name, _ in plate.positions()]
    rows = []
    for cache_mib in args.cache_pool_mib:
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
        n_batches = min(args.batches, len(dataset) // BATCH_SIZE)
        order = np.random.default_rng(0).permutation(len(dataset))
        batches = [order[i * BATCH_SIZE : (i + 1) * BATCH_SIZE].tolist() for i in range(n_batches)]
        regions = {
            tuple(batch): list(
                regions_of(dataset, np.concatenate([dataset._anchor_rows[batch], dataset._positive_rows[batch]]))
            )
            for batch in batches
        }
        context = _tensorstore_context(cache_mib << 20)
        stores = [open_tensorstore(position["0"], context=context) for position in positions]
        images = [position["0"] for position in positions]

        def dataset_read(batch, dataset=dataset):
            sample = dataset.__getitems__(batch)
            return sample["anchor"], sample["positive"]

        def raw_read(batch, stores=stores, regions=regions):
            batch_regions = regions[tuple(batch)]
            out = np.empty((len(batch_regions), len(CHANNELS), Z_SLICES, *PATCH), dtype=np.float32)
            destination = ts.array(out, copy=False, write=True)
            futures = [
                destination[i].write(stores[p][t, 0:2, 0:Z_SLICES, ys, xs])
                for i, (p, t, ys, xs) in enumerate(batch_regions)
            ]
            for future in futures:
                future.result()
            return out

        def raw_futures(batch, stores=stores, regions=regions):
            futures = [stores[p][t, 0:2, 0:Z_SLICES, ys, xs].read() for p, t, ys, xs in regions[tuple(batch)]]
            return [future.result() for future in futures]

        def naive_read(batch, images=images, regions=regions):
            return [images[p].oindex[t, [0, 1], 0:Z_SLICES, ys, xs] for p, t, ys, xs in regions[tuple(batch)]]

        for function in (dataset_read, raw_read, raw_futures, naive_read):
            function(batches[0])  # warm up: open stores, fill the page (and chunk) cache
        times = {
            "TripletDataset.__getitems__": timed(dataset_read, batches, args.rounds),
            "raw tensorstore (same regions)": timed(raw_read, batches, args.rounds),
            "raw tensorstore, one array per patch": timed(raw_futures, batches, args.rounds),
            "naive per-patch zarr (iohub oindex)": timed(naive_read, batches[:1], 1),
        }
        patches = 2 * BATCH_SIZE
        raw = times["raw tensorstore (same regions)"]
        for name, seconds in times.items():
            rows.append((cache_mib, name, patches / seconds, raw / seconds))

    print(
        f"\n{len(positions)} FOVs, batch {BATCH_SIZE} anchors + {BATCH_SIZE} positives, {len(CHANNELS)} channels, "
        f"{Z_SLICES} z, {PATCH[0]}x{PATCH[1]} patches, float32; median of {args.rounds} rounds"
    )
    print(f"{'cache pool':>10} | {'method':<36} | {'patches/s':>10} | {'vs raw':>7}")
    print("-" * 74)
    for cache_mib, name, rate, ratio in rows:
        print(f"{cache_mib:>7} MiB | {name:<36} | {rate:>10.1f} | {ratio:>6.0%}")


if __name__ == "__main__":
    main()
