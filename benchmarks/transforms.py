"""Batched viscy-transforms against MONAI's per-sample transforms looped over the batch.

For a (B, C, Z, Y, X) float32 batch, times each batched transform (one call on the whole batch)
and the equivalent MONAI array transform applied to every sample in a Python loop, in the same
run, at prob=1 (every sample is transformed). Prints the median over the repeats.

    uv run python benchmarks/transforms.py --device cpu
    uv run python benchmarks/transforms.py --device cuda --repeats 20

MONAI runs with metadata tracking off (plain tensors), which is its fastest mode.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
from monai.data import set_track_meta
from monai.transforms import RandAdjustContrast, RandAffine, RandFlip, RandGaussianNoise

from viscy_transforms import BatchedRandAdjustContrast, BatchedRandAffined, BatchedRandFlip, BatchedRandGaussianNoise

Run = Callable[[torch.Tensor], object]


def configurations() -> list[tuple[str, Run, Run]]:
    """(name, batched call, per-sample call) for every configuration, all at prob=1."""
    affine = BatchedRandAffined(keys="x", prob=1.0, rotate_range=[math.pi, 0.0, 0.0], scale_range=(0.8, 1.2))
    monai_affine = RandAffine(
        prob=1.0, rotate_range=(math.pi, 0.0, 0.0), scale_range=(0.2, 0.2, 0.2), padding_mode="zeros"
    )
    flip = BatchedRandFlip(spatial_axes=(0, 1, 2), prob=1.0)
    monai_flip = RandFlip(prob=1.0, spatial_axis=(0, 1, 2))
    contrast = BatchedRandAdjustContrast(gamma=(0.5, 2.0), prob=1.0)
    monai_contrast = RandAdjustContrast(prob=1.0, gamma=(0.5, 2.0))
    noise = BatchedRandGaussianNoise(prob=1.0, std=0.1)
    monai_noise = RandGaussianNoise(prob=1.0, std=0.1)
    return [
        ("affine (rotate + scale, trilinear)", lambda x: affine({"x": x}), per_sample(monai_affine)),
        ("flip (Z, Y, X)", flip, per_sample(monai_flip)),
        ("contrast (gamma)", contrast, per_sample(monai_contrast)),
        ("gaussian noise", noise, per_sample(monai_noise)),
    ]


def per_sample(transform: Callable[[torch.Tensor], object]) -> Run:
    return lambda batch: [transform(sample) for sample in batch]


def median_ms(run: Run, batch: torch.Tensor, warmup: int, repeats: int) -> float:
    synchronize = torch.cuda.synchronize if batch.is_cuda else (lambda: None)
    times = []
    with torch.no_grad():
        for index in range(warmup + repeats):
            synchronize()
            start = time.perf_counter()
            run(batch)
            synchronize()
            if index >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=(15, 256, 256), metavar=("Z", "Y", "X"))
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA device")

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    set_track_meta(False)
    torch.manual_seed(0)
    batch = torch.rand(args.batch_size, args.channels, *args.shape, device=args.device)
    device_name = torch.cuda.get_device_name() if batch.is_cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"batch {tuple(batch.shape)} float32 on {device_name}; median of {args.repeats} after {args.warmup} warmup")
    header = f"{'configuration':<36} {'batched ms':>11} {'per-sample ms':>14} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for name, batched, looped in configurations():
        batched_ms = median_ms(batched, batch, args.warmup, args.repeats)
        looped_ms = median_ms(looped, batch, args.warmup, args.repeats)
        print(f"{name:<36} {batched_ms:>11.1f} {looped_ms:>14.1f} {looped_ms / batched_ms:>6.1f}x")


if __name__ == "__main__":
    main()
