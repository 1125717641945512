"""Batched viscy-transforms against MONAI's per-sample transforms looped over the batch.

For a (B, C, Z, Y, X) float32 batch, times each batched transform (one call on the whole batch)
and the equivalent MONAI array transform applied to every sample in a Python loop, in the same
run, at prob=1 (every sample is transformed). Prints the median over the repeats.

    uv run python benchmarks/transforms.py --device cpu
    uv run python benchmarks/transforms.py --device cuda --repeats 20

MONAI runs with metadata tracking off (plain tensors), which is its fastest mode.

``--part quantile`` times the per-sample percentiles instead: ``batched_quantiles`` (exact sample
and bracket selection) against the two-``kthvalue`` implementation it replaced, kept here as the
baseline and measured in the same run (the results are checked to be equal). Its batch defaults
to (64, 1, 30, 384, 384); pass a smaller ``--batch-size`` for a quick run:

    uv run python benchmarks/transforms.py --part quantile --device cuda
    uv run python benchmarks/transforms.py --part quantile --batch-size 4 --repeats 3
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from monai.data import set_track_meta
from monai.transforms import RandAdjustContrast, RandAffine, RandFlip, RandGaussianNoise

import viscy_transforms._percentile as percentile
from viscy_transforms import (
    BatchedRandAdjustContrast,
    BatchedRandAffined,
    BatchedRandFlip,
    BatchedRandGaussianNoise,
    BatchedScaleIntensityRangePercentiles,
)

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


def kthvalue_quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """Baseline: the ``batched_quantile`` that ``batched_quantiles`` replaced (two kthvalue calls)."""
    position = q * (values.shape[-1] - 1)
    below = int(np.floor(position))
    above = min(below + 1, values.shape[-1] - 1)
    low = values.kthvalue(below + 1, dim=-1).values
    weight = position - below
    if weight == 0:
        return low
    high = values.kthvalue(above + 1, dim=-1).values
    return low + weight * (high - low)


def kthvalue_quantiles(values: torch.Tensor, qs: tuple[float, ...]) -> torch.Tensor:
    return torch.stack([kthvalue_quantile(values, q) for q in qs])


def quantile_configurations() -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor], Run, Run]]:
    """(name, batch maker, new call, kthvalue call); quantiles per sample, as the transform takes them."""
    transform = BatchedScaleIntensityRangePercentiles(lower=50, upper=99, b_min=0.0, b_max=1.0)

    def with_kthvalue(batch: torch.Tensor) -> torch.Tensor:
        new, percentile.batched_quantiles = percentile.batched_quantiles, kthvalue_quantiles
        try:
            return transform(batch)
        finally:
            percentile.batched_quantiles = new

    def camera(batch: torch.Tensor) -> torch.Tensor:
        return (batch * 48 + 100).round()  # integer counts around a background: many ties

    def per_sample(batch: torch.Tensor) -> torch.Tensor:
        return batch.reshape(batch.shape[0], -1)

    def uniform(batch: torch.Tensor) -> torch.Tensor:
        return batch

    return [
        (
            "q 0.99, uniform",
            uniform,
            lambda x: percentile.batched_quantile(per_sample(x), 0.99),
            lambda x: kthvalue_quantile(per_sample(x), 0.99),
        ),
        (
            "q 0.5 + 0.99, uniform",
            uniform,
            lambda x: percentile.batched_quantiles(per_sample(x), (0.5, 0.99)),
            lambda x: kthvalue_quantiles(per_sample(x), (0.5, 0.99)),
        ),
        (
            "q 0.5 + 0.99, integer counts",
            camera,
            lambda x: percentile.batched_quantiles(per_sample(x), (0.5, 0.99)),
            lambda x: kthvalue_quantiles(per_sample(x), (0.5, 0.99)),
        ),
        ("transform 50-99, integer counts", camera, transform, with_kthvalue),
    ]


def run_quantiles(batch: torch.Tensor, warmup: int, repeats: int) -> None:
    header = f"{'configuration':<34} {'new ms':>10} {'kthvalue ms':>12} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for name, make, new, baseline in quantile_configurations():
        data = make(batch)
        if not torch.equal(new(data), baseline(data)):
            raise AssertionError(f"{name}: batched_quantiles differs from the kthvalue baseline")
        new_ms = median_ms(new, data, warmup, repeats)
        baseline_ms = median_ms(baseline, data, warmup, repeats)
        print(f"{name:<34} {new_ms:>10.1f} {baseline_ms:>12.1f} {baseline_ms / new_ms:>6.1f}x")


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
    parser.add_argument("--part", choices=["transforms", "quantile"], default="transforms")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default 32 (transforms), 64 (quantile)")
    parser.add_argument("--channels", type=int, default=None, help="default 2 (transforms), 1 (quantile)")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=None,
        metavar=("Z", "Y", "X"),
        help="default 15 256 256 (transforms), 30 384 384 (quantile)",
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA device")

    quantile = args.part == "quantile"
    batch_size = args.batch_size or (64 if quantile else 32)
    channels = args.channels or (1 if quantile else 2)
    shape = args.shape or ((30, 384, 384) if quantile else (15, 256, 256))

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    set_track_meta(False)
    torch.manual_seed(0)
    batch = torch.rand(batch_size, channels, *shape, device=args.device)
    device_name = torch.cuda.get_device_name() if batch.is_cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"batch {tuple(batch.shape)} float32 on {device_name}; median of {args.repeats} after {args.warmup} warmup")
    if quantile:
        run_quantiles(batch, args.warmup, args.repeats)
        return
    header = f"{'configuration':<36} {'batched ms':>11} {'per-sample ms':>14} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for name, batched, looped in configurations():
        batched_ms = median_ms(batched, batch, args.warmup, args.repeats)
        looped_ms = median_ms(looped, batch, args.warmup, args.repeats)
        print(f"{name:<36} {batched_ms:>11.1f} {looped_ms:>14.1f} {looped_ms / batched_ms:>6.1f}x")


if __name__ == "__main__":
    main()
