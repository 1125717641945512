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

``--part chain`` times the whole after-transfer chain of each example config (``fit.yml``,
``multi_experiment_fit.yml``: their normalizations and augmentations at their configured
probabilities, then the final crop), one view (one call on a batch of both channels) at full size,
in four forms measured in the same run: as it ran before issue 19 (the configured order on the
whole read, then the crop, with the two-``kthvalue`` percentiles), the configured order with
``batched_quantiles``, the order of ``viscy_data.after_transfer`` (normalize the read, the affine
resampled straight into the final patch, intensity transforms on the final patch), and that order
on the smaller read that the data modules now make (``smallest_read_yx``: what the affine can
sample; its percentiles are then taken over that read). Every form is seeded the same per repeat.
The batch defaults to 64 x 2 x 30 x 384 x 384 (final 160 x 160, as the configs): on a CPU pass a
smaller ``--batch-size``:

    uv run python benchmarks/transforms.py --part chain --device cuda
    uv run python benchmarks/transforms.py --part chain --batch-size 4 --repeats 3
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml
from monai.data import set_track_meta
from monai.transforms import Compose, RandAdjustContrast, RandAffine, RandFlip, RandGaussianNoise
from training import instantiate

import viscy_transforms._percentile as percentile
from viscy_data.after_transfer import after_transfer_pipeline, smallest_read_yx
from viscy_transforms import (
    BatchedCenterSpatialCropd,
    BatchedRandAdjustContrast,
    BatchedRandAffined,
    BatchedRandFlip,
    BatchedRandGaussianNoise,
    BatchedScaleIntensityRangePercentiles,
)

Run = Callable[[torch.Tensor], object]

CONFIGS = Path(__file__).resolve().parents[1] / "applications/dynaclr/examples/configs"
CHAIN_CONFIGS = {"fit.yml": ["Phase3D", "RFP"], "multi_experiment_fit.yml": ["ch_0", "ch_1"]}
"""Example configs whose chain ``--part chain`` times, with their transform keys (channel order)."""


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
        ("transform 50-99, integer counts", camera, transform, using_kthvalue(transform)),
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


def using_kthvalue(run: Run) -> Run:
    """``run`` with the per-sample percentiles computed by the two-``kthvalue`` baseline."""

    def with_kthvalue(batch: object) -> object:
        new, percentile.batched_quantiles = percentile.batched_quantiles, kthvalue_quantiles
        try:
            return run(batch)
        finally:
            percentile.batched_quantiles = new

    return with_kthvalue


def chain_forms(
    config: str, keys: list[str], shape: tuple[int, int, int]
) -> tuple[tuple[int, int], list[tuple[str, Run, tuple[int, int]]]]:
    """Return the final YX size and the (name, timed call, YX read) of each form of one example config's chain."""
    data = yaml.safe_load((CONFIGS / config).read_text())["data"]["init_args"]
    final = (shape[0], *data["final_yx_patch_size"])

    def configured() -> list:
        return instantiate(data["normalizations"]) + instantiate(data["augmentations"])

    def configured_order() -> Compose:
        return Compose([*configured(), BatchedCenterSpatialCropd(keys=keys, roi_size=final)])

    before, with_quantiles = configured_order(), configured_order()
    ordered = after_transfer_pipeline(configured(), crop_keys=keys, crop_size=final)
    on_smallest_read = after_transfer_pipeline(configured(), crop_keys=keys, crop_size=final)
    smallest = smallest_read_yx(on_smallest_read, shape[1:], shape[0])
    smallest_run = seeded(on_smallest_read, on_smallest_read)
    read = shape[1:]
    return tuple(data["final_yx_patch_size"]), [
        ("before: configured order, kthvalue", seeded(before, using_kthvalue(before)), read),
        ("configured order, batched_quantiles", seeded(with_quantiles, with_quantiles), read),
        ("after_transfer_pipeline", seeded(ordered, ordered), read),
        (f"after_transfer_pipeline, {smallest[0]}x{smallest[1]} read", smallest_run, smallest),
    ]


def seeded(pipeline: Compose, run: Run) -> Run:
    """``run`` with ``pipeline`` reseeded first, so that every repeat and every form draws alike."""

    def call(batch: object) -> object:
        pipeline.set_random_state(seed=0)
        return run(batch)

    return call


def chain_batch(keys: list[str], batch_size: int, shape: tuple[int, int, int], device: str) -> dict:
    """One view: phase-like values and camera counts, with per-sample FOV statistics for NormalizeSampled."""
    generator = torch.Generator(device=device).manual_seed(0)
    phase = torch.randn(batch_size, 1, *shape, device=device, generator=generator)
    counts = (torch.rand(batch_size, 1, *shape, device=device, generator=generator) * 48 + 100).round()
    statistics_ = {"mean": torch.zeros(batch_size, device=device), "std": torch.ones(batch_size, device=device)}
    return {keys[0]: phase, keys[1]: counts, "norm_meta": {key: {"fov_statistics": statistics_} for key in keys}}


def run_chains(batch_size: int, shape: tuple[int, int, int], device: str, warmup: int, repeats: int) -> None:
    header = f"{'config':<26} {'chain':<42} {'ms per view':>12} {'ms per sample':>14} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    for config, keys in CHAIN_CONFIGS.items():
        batch = chain_batch(keys, batch_size, shape, device)
        final, forms = chain_forms(config, keys, shape)
        baseline_ms = None
        for name, run, read in forms:
            crop = BatchedCenterSpatialCropd(keys=keys, roi_size=(shape[0], *read))
            ms = median_ms(run, crop(batch), warmup, repeats)  # the read, made outside the timed call
            baseline_ms = baseline_ms or ms
            print(f"{config:<26} {name:<42} {ms:>12.1f} {ms / batch_size:>14.2f} {baseline_ms / ms:>8.1f}x")
        print(f"{'':<26} (configured read {shape[1]}x{shape[2]}, final {final[0]}x{final[1]})")


def median_ms(run: Run, batch: torch.Tensor, warmup: int, repeats: int) -> float:
    on_cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    synchronize = torch.cuda.synchronize if on_cuda else (lambda: None)
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
    parser.add_argument("--part", choices=["transforms", "quantile", "chain"], default="transforms")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default 32 (transforms), 64 (quantile, chain)")
    parser.add_argument("--channels", type=int, default=None, help="default 2 (transforms), 1 (quantile)")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=None,
        metavar=("Z", "Y", "X"),
        help="default 15 256 256 (transforms), 30 384 384 (quantile, chain)",
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA device")

    quantile = args.part == "quantile"
    full_size = args.part in ("quantile", "chain")
    batch_size = args.batch_size or (64 if full_size else 32)
    channels = args.channels or (1 if quantile else 2)
    shape = args.shape or ((30, 384, 384) if full_size else (15, 256, 256))

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    set_track_meta(False)
    torch.manual_seed(0)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    timing = f"median of {args.repeats} after {args.warmup} warmup"
    if args.part == "chain":
        print(f"one view: {batch_size} x 2 x {tuple(shape)} float32 on {device_name}; {timing}")
        run_chains(batch_size, tuple(shape), args.device, args.warmup, args.repeats)
        return
    batch = torch.rand(batch_size, channels, *shape, device=args.device)
    print(f"batch {tuple(batch.shape)} float32 on {device_name}; {timing}")
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
