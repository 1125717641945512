"""Loader-only throughput of ``fit.yml``'s TripletDataModule, against a raw tensorstore read of the same regions.

No model: the training loader's batches (anchor, positive and negative patches with their normalization
metadata, read by ``TripletDataset.__getitems__`` in the loader's reading thread) are taken one after another
and moved to the device (``--device cuda``; on the CPU they stay where they are), as fast as they come. The
ceiling, measured in the same run, reads the same anchor and positive regions (at the size the data module
reads: what its augmentations can sample, ``read_yx_patch_size``), and as many negatives at the anchors of the
next batch, with one tensorstore batch into one array allocated (and paged in) once and reused for every
batch, in the main thread. Both paths read the same plate, written by ``benchmarks/training.py``'s
``write_plate`` at the example config's size.

    uv run python benchmarks/loader.py --quick                 # tiny sizes (smoke run)
    uv run python benchmarks/loader.py                         # fit.yml size: 30 z, 384 -> 160, batch 64
    uv run python benchmarks/loader.py --chunk-yx 128           # a plate chunked for patch reads
    uv run python benchmarks/loader.py --device cuda --pin-memory

The table gives samples/s (anchors per second, as in the training benchmark), MB/s of patch data delivered,
and the loader's share of the ceiling (the issue's goal is 0.8).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts
import torch
import yaml
from lightning.fabric.utilities.apply_func import move_data_to_device
from training import DEFAULTS, FIT_CONFIG, Sizes, build_datamodule, write_plate

from viscy_data.ome_compat import open_ome_zarr, open_tensorstore, tensorstore_context

VIEWS = ("anchor", "positive", "negative")


def loader_seconds(datamodule: Any, device: torch.device, warmup: int, steps: int) -> list[float]:
    """Seconds between successive training batches delivered on ``device``, after ``warmup`` batches."""
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    loader = datamodule.train_dataloader()
    if device.type == "cuda":
        loader.copy_to = device  # what the data module does under a CUDA trainer: pinned batches copied by the threads
    batches = iter(loader)
    seconds = []
    last = time.perf_counter()
    for step in range(warmup + steps):
        batch = move_data_to_device(next(batches), device)
        synchronize()
        now = time.perf_counter()
        if step >= warmup:
            seconds.append(now - last)
        last = now
        del batch
    return seconds


def batch_regions(dataset: Any, indices: list[int], next_indices: list[int], half: tuple[int, int]) -> list[tuple]:
    """(FOV, t, Y slice, X slice) of a batch's anchors, their positives one frame later, and stand-in negatives."""
    anchors = dataset.valid_anchors.iloc[indices]
    by_cell = dataset.tracks.set_index(["global_track_id", "t"])
    positives = by_cell.loc[list(zip(anchors["global_track_id"], anchors["t"] + 1, strict=True))].reset_index()
    negatives = dataset.valid_anchors.iloc[next_indices]
    return [
        (row.fov_name, int(row.t), slice(row.y - half[0], row.y + half[0]), slice(row.x - half[1], row.x + half[1]))
        for rows in (anchors, positives, negatives)
        for row in rows.itertuples()
    ]


def ceiling_seconds(datamodule: Any, sizes: Sizes, warmup: int, steps: int, cache_pool_mib: int) -> list[float]:
    """Seconds per batch of a raw tensorstore read of the same regions into one array reused for every batch."""
    dataset = datamodule.train_dataset
    half = (datamodule.read_yx_patch_size[0] // 2, datamodule.read_yx_patch_size[1] // 2)
    plate = open_ome_zarr(datamodule.data_path, layout="hcs", mode="r")
    context = tensorstore_context(cache_pool_mib << 20)
    stores = {name: open_tensorstore(position["0"], context=context) for name, position in plate.positions()}
    channels = slice(0, len(datamodule.source_channel))
    order = np.random.default_rng(0).permutation(len(dataset)).tolist()
    size = sizes.batch
    out = np.zeros((3 * size, channels.stop, sizes.z, 2 * half[0], 2 * half[1]), dtype=np.float32)  # touched once
    destination = ts.array(out, copy=False, write=True)
    seconds = []
    for step in range(warmup + steps):
        indices, next_indices = order[step * size : (step + 1) * size], order[(step + 1) * size : (step + 2) * size]
        regions = batch_regions(dataset, indices, next_indices or indices, half)
        start = time.perf_counter()
        with ts.Batch() as read_batch:
            futures = [
                destination[i].write(stores[fov][t, channels, 0 : sizes.z, ys, xs], batch=read_batch)
                for i, (fov, t, ys, xs) in enumerate(regions)
            ]
        for future in futures:
            future.result()
        if step >= warmup:
            seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few batches (smoke run)")
    parser.add_argument("--batch-size", type=int, default=None, help="anchors per batch (default 64; 8 with --quick)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    parser.add_argument("--steps", type=int, default=6, help="timed batches")
    parser.add_argument("--num-workers", type=int, default=1, help="loader reading threads")
    parser.add_argument("--pin-memory", action="store_true", help="pin batches (CUDA only)")
    parser.add_argument("--cache-pool-mib", type=int, default=0, help="tensorstore chunk cache of both paths")
    parser.add_argument("--chunk-yx", type=int, default=None, help="plate YX chunk size (default: whole image)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep (and reuse) the plate here")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA device, and torch.cuda.is_available() is False on this machine")
    base = DEFAULTS["quick" if args.quick else "cuda"]  # the example config's full size unless --quick
    sizes = Sizes(
        z=base["z"],
        initial=base["initial"],
        final=base["final"],
        batch=args.batch_size or base["batch"],
        warmup=args.warmup,
        steps=args.steps + 1,  # the ceiling's stand-in negatives come from the next batch
    )
    logging.getLogger("viscy_data").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*thread worker.*")
    config = yaml.safe_load(FIT_CONFIG.read_text())
    channels = list(config["data"]["init_args"]["source_channel"])
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="viscy-loader-bench-") as tmp:
        start = time.perf_counter()
        store, tracks, plate = write_plate(args.workdir or Path(tmp), sizes, channels, args.chunk_yx)
        plate_s = time.perf_counter() - start
        datamodule = build_datamodule(
            config, sizes, store, tracks, args.num_workers, args.pin_memory, args.cache_pool_mib
        )
        datamodule.setup("fit")
        read = datamodule.read_yx_patch_size
        hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        views = [key for key in VIEWS if key != "negative" or datamodule.return_negative]
        sample_mb = len(views) * len(channels) * sizes.z * read[0] * read[1] * 4 / 1e6
        print(f"# fit.yml TripletDataModule training batches delivered to {hardware}, torch {torch.__version__}")
        print(
            f"# batch {sizes.batch} anchors x {len(views)} views ({'+'.join(views)}) x {len(channels)} ch x "
            f"{sizes.z} z x {read[0]}x{read[1]} read (configured {sizes.initial}x{sizes.initial}), float32 = "
            f"{sample_mb:.1f} MB per anchor; {args.num_workers} reading thread(s), pin_memory {args.pin_memory}, "
            f"tensorstore cache {args.cache_pool_mib} MiB"
        )
        print(f"# plate: {plate}; ready in {plate_s:.1f} s")
        print(f"# {args.warmup} warm-up + {args.steps} timed batches per row; median seconds per batch")
        rows = {
            "raw tensorstore, same regions (ceiling)": ceiling_seconds(
                datamodule, sizes, args.warmup, args.steps, args.cache_pool_mib
            ),
            f"TripletDataModule loader -> {args.device}": loader_seconds(datamodule, device, args.warmup, args.steps),
        }
        ceiling = sizes.batch / statistics.median(rows["raw tensorstore, same regions (ceiling)"])
        print("| path | s per batch | samples/s | MB/s | vs ceiling |")
        print("|------|-------------|-----------|------|------------|")
        for name, seconds in rows.items():
            median = statistics.median(seconds)
            rate = sizes.batch / median
            print(f"| {name} | {median:.3f} | {rate:.1f} | {rate * sample_mb:.0f} | {rate / ceiling:.2f}x |")


if __name__ == "__main__":
    main()
