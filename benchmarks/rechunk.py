"""Patch reads from a plate with one chunk per (Z, Y, X) stack against its ``viscy rechunk`` copies.

For each image size, writes a synthetic plate (``viscy_data.synthetic``, iohub's default layout: one
zstd-compressed chunk per time point, channel and Z stack), copies it with
``viscy_utils.rechunk.rechunk_plate`` (128 x 128 chunks with LZ4 or without compression, and with a
shard per stack where the plate is in zarr format 3, i.e. iohub >= 0.3 on Python >= 3.12), then reads
the same random patches (all Z, both channels, ``--patch`` x ``--patch`` in YX) from every layout, in
tensorstore batches into one reused array, as the training readers do, without a chunk cache. The
baseline (the source plate) is measured in the same run. The plates were just written, so their files
are in the page cache: the table measures decoding, not the disk.

    uv run python benchmarks/rechunk.py                  # 768^2 and 2048^2, 30 z, 284^2 patches
    uv run python benchmarks/rechunk.py --quick          # tiny sizes (smoke run)

Columns: the chunk shape, the plate's size on disk, the time ``rechunk_plate`` took to write the copy,
how many bytes are decoded per byte of patch (from the chunk grid and the patch positions), patches
read per second (median over batches, the layouts taking turns batch by batch), MB/s of patch data
and the speed-up over the source layout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version as version_of
from pathlib import Path

import numpy as np
import tensorstore as ts

from viscy_data.ome_compat import (
    SUPPORTED_OME_VERSIONS,
    open_ome_zarr,
    open_tensorstore,
    tensorstore_context,
)
from viscy_data.synthetic import write_synthetic_plate
from viscy_utils.rechunk import rechunk_plate

CHANNELS = ("Phase3D", "GFP")
WELLS = {"A/1": "infected"}

Region = tuple[str, int, int, int]
"""FOV name, time point, top and left of a patch."""


def disk_mb(path: Path) -> float:
    """Size of the files under ``path`` in MB."""
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) / 1e6


def random_regions(plate: Path, patch: int, count: int, seed: int) -> list[Region]:
    """``count`` random patches: a FOV, a time point and a top-left corner each."""
    rng = np.random.default_rng(seed)
    with open_ome_zarr(plate, layout="hcs", mode="r") as source:
        names = [name for name, _ in source.positions()]
        frames, _, _, height, width = source[names[0]]["0"].shape
    return [
        (
            names[rng.integers(len(names))],
            int(rng.integers(frames)),
            *map(int, rng.integers(0, (height - patch + 1, width - patch + 1))),
        )
        for _ in range(count)
    ]


def decoded_per_patch_byte(regions: list[Region], patch: int, chunk_yx: tuple[int, int]) -> float:
    """Mean bytes decoded per byte of patch: the area of the chunks each patch touches over its own area."""
    touched = [
        (math.floor((top + patch - 1) / chunk_yx[0]) - top // chunk_yx[0] + 1)
        * (math.floor((left + patch - 1) / chunk_yx[1]) - left // chunk_yx[1] + 1)
        for _, _, top, left in regions
    ]
    return statistics.mean(touched) * chunk_yx[0] * chunk_yx[1] / patch**2


def patch_reader(plate: Path, patch: int, batch: int) -> Callable[[list[Region]], None]:
    """Return a function that reads a batch of patches of ``plate`` in one tensorstore batch into one reused array."""
    context = tensorstore_context(0)
    with open_ome_zarr(plate, layout="hcs", mode="r") as source:
        stores = {name: open_tensorstore(position["0"], context=context) for name, position in source.positions()}
    first = next(iter(stores.values()))
    out = np.zeros((batch, first.shape[1], first.shape[2], patch, patch), dtype=first.dtype.numpy_dtype)
    destination = ts.array(out, copy=False, write=True)

    def read(regions: list[Region]) -> None:
        with ts.Batch() as read_batch:
            futures = [
                destination[i].write(stores[fov][t, :, :, top : top + patch, left : left + patch], batch=read_batch)
                for i, (fov, t, top, left) in enumerate(regions)
            ]
        for future in futures:
            future.result()

    return read


def interleaved_seconds(readers: dict[str, Callable], regions: list[Region], batch: int) -> dict[str, list[float]]:
    """Seconds per batch of each reader, batch by batch in rotating order (the first batch untimed)."""
    seconds: dict[str, list[float]] = {name: [] for name in readers}
    names = list(readers)
    for index, start in enumerate(range(0, len(regions) - batch + 1, batch)):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            began = time.perf_counter()
            readers[name](regions[start : start + batch])
            if index > 0:
                seconds[name].append(time.perf_counter() - began)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[768, 2048], help="image heights and widths")
    parser.add_argument("--z", type=int, default=30, help="Z slices")
    parser.add_argument("--fovs", type=int, default=2, help="FOVs per plate")
    parser.add_argument("--frames", type=int, default=1, help="time points per FOV")
    parser.add_argument("--dtype", choices=("float32", "uint16"), default="float32", help="stored type")
    parser.add_argument("--patch", type=int, default=284, help="patch height and width read")
    parser.add_argument("--chunk-yx", type=int, default=128, help="chunk height and width of the copies")
    parser.add_argument("--batch", type=int, default=8, help="patches per tensorstore batch")
    parser.add_argument("--batches", type=int, default=5, help="timed batches per layout")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="write the plates here (default: a temporary folder)"
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.z, args.patch, args.chunk_yx, args.batches = [96, 192], 5, 40, 32, 2
    logging.getLogger("viscy_data").setLevel(logging.WARNING)
    version = "0.5" if "0.5" in SUPPORTED_OME_VERSIONS else "0.4"
    layouts = {"128^2 chunks, lz4": {"compression": "lz4"}, "128^2 chunks, uncompressed": {"compression": "none"}}
    if version == "0.5":
        layouts["128^2 chunks in a shard per stack, lz4"] = {"compression": "lz4", "shard": True}
    layouts = {name.replace("128", str(args.chunk_yx)): options for name, options in layouts.items()}
    print(
        f"# random {args.patch}x{args.patch} patches x {len(CHANNELS)} channels x {args.z} z ({args.dtype}), "
        f"tensorstore batches of {args.batch}, {args.batches} timed batches per layout, no chunk cache"
    )
    print(
        f"# {os.cpu_count()} CPUs, tensorstore {version_of('tensorstore')}, iohub {version_of('iohub')}, "
        f"OME-Zarr {version}; {args.fovs} FOVs x {args.frames} time points per plate (viscy_data.synthetic)"
    )
    print(
        "| image | layout | chunk (Z, Y, X) | disk MB | copy s | decoded / patch bytes | patches/s | MB/s | speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="viscy-rechunk-bench-", dir=args.workdir) as tmp:
        for size in args.sizes:
            root = Path(tmp) / str(size)
            source = write_synthetic_plate(
                root / "source.zarr",
                well_conditions=WELLS,
                channel_names=CHANNELS,
                fovs_per_well=args.fovs,
                n_frames=args.frames,
                z_slices=args.z,
                yx_size=(size, size),
                cells_per_fov=max(4, size**2 // 20000),
                cell_radius=8.0,
                dtype=args.dtype,
                version=version,
            ).store_path
            regions = random_regions(source, args.patch, args.batch * (args.batches + 1), seed=size)
            patch_mb = len(CHANNELS) * args.z * args.patch**2 * np.dtype(args.dtype).itemsize / 1e6
            plates = {"one chunk per stack (source)": (source, (args.z, size, size), math.nan)}
            for name, options in layouts.items():
                copy = root / f"{len(plates)}.zarr"
                with contextlib.redirect_stdout(io.StringIO()):  # its progress lines
                    report = rechunk_plate(source, copy, chunk_yx=args.chunk_yx, **options)
                plates[name] = (copy, report.chunks[2:], report.seconds)
            readers = {name: patch_reader(plate, args.patch, args.batch) for name, (plate, _, _) in plates.items()}
            seconds = interleaved_seconds(readers, regions, args.batch)
            baseline = args.batch / statistics.median(seconds["one chunk per stack (source)"])
            for name, (plate, chunks, copy_seconds) in plates.items():
                rate = args.batch / statistics.median(seconds[name])
                ratio = decoded_per_patch_byte(regions, args.patch, chunks[1:])
                copy_s = "-" if math.isnan(copy_seconds) else f"{copy_seconds:.1f}"
                print(
                    f"| {size}^2 | {name} | {', '.join(map(str, chunks))} | {disk_mb(plate):.0f} | {copy_s} | "
                    f"{ratio:.1f} | {rate:.1f} | {rate * patch_mb:.0f} | {rate / baseline:.1f}x |",
                    flush=True,
                )
    print(f"# run took {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
