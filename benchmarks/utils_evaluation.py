"""viscy-utils: ``viscy preprocess`` statistics and embedding smoothness at growing sizes.

- ``generate_normalization_metadata`` on a synthetic plate (16 FOVs, 8 frames, 5 slices,
  256 x 256) with 1, 2 and 4 FOVs read in parallel;
- ``compute_embeddings_smoothness`` on 10k, 100k and 1M tracked embeddings (D=64): it never
  builds the N x N distance matrix, whose float64 size is shown for comparison.

Run: ``uv run python benchmarks/utils_evaluation.py [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from viscy_data.synthetic import write_synthetic_plate
from viscy_utils.evaluation.smoothness import compute_embeddings_smoothness
from viscy_utils.meta_utils import generate_normalization_metadata


def bench_preprocess(workdir: Path) -> None:
    plate = workdir / "plate.zarr"
    write_synthetic_plate(
        plate,
        tracks_path=workdir / "tracks",
        annotations_path=workdir / "annotations.csv",
        fovs_per_well=4,
        n_frames=8,
        z_slices=5,
        yx_size=(256, 256),
        overwrite=True,
    )
    print("| preprocess (16 FOVs x 8 T x 2 C x 5 Z x 256^2, grid 4) | seconds |")
    print("|---|---|")
    for workers in (1, 2, 4):
        copy = workdir / f"plate_{workers}.zarr"
        shutil.copytree(plate, copy)
        start = time.perf_counter()
        generate_normalization_metadata(copy, num_workers=workers, grid_spacing=4)
        print(f"| num_workers={workers} | {time.perf_counter() - start:.2f} |")


def tracked_embeddings(n: int, dim: int = 64, frames: int = 20, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    tracks = n // frames
    features = np.cumsum(rng.normal(0, 0.1, size=(tracks, frames, dim)), axis=1) + rng.normal(size=(tracks, 1, dim))
    obs = pd.DataFrame(
        {
            "fov_name": np.repeat([f"A/1/{i % 10}" for i in range(tracks)], frames),
            "track_id": np.repeat(np.arange(tracks), frames),
            "t": np.tile(np.arange(frames), tracks),
        }
    )
    order = rng.permutation(len(obs))
    obs = obs.iloc[order].reset_index(drop=True)
    obs.index = obs.index.astype(str)
    return ad.AnnData(X=features.reshape(-1, dim)[order].astype(np.float32), obs=obs)


def bench_smoothness() -> None:
    print()
    print("| smoothness N (D=64) | seconds | peak traced MiB | N x N float64 MiB |")
    print("|---|---|---|---|")
    compute_embeddings_smoothness(tracked_embeddings(1_000))  # warm-up: imports
    for n in (10_000, 100_000, 1_000_000):
        adata = tracked_embeddings(n)
        tracemalloc.start()
        start = time.perf_counter()
        compute_embeddings_smoothness(adata)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print(f"| {n:,} | {elapsed:.2f} | {peak:.0f} | {n * n * 8 / 2**20:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        bench_preprocess(workdir)
    bench_smoothness()


if __name__ == "__main__":
    main()
