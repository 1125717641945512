"""Multi-experiment sampling: FlexibleBatchSampler against the reference's algorithm and a plain shuffle.

A random table of 2M anchors (20 experiments of different sizes, 2 conditions, HPI 0-48 h every
30 min, string columns as a parquet load gives them) is sampled in batches of 256 with every axis
on (experiment-aware with weights, condition-balanced, temporal enrichment, 10% leak). Each method is
timed in the same run:

- ``FlexibleBatchSampler``: construction, time to the first batch, mean time per batch over
  ``--batches`` batches after the first; also as rank 3 of 8 and with every axis off;
- the reference's algorithm (spec ``viscy-data.md`` §3.8), re-implemented as a baseline: pandas
  ``groupby`` index arrays at construction; per batch, the leak pool is the concatenation of every
  other experiment's anchors and the temporal masks scan the whole experiment. Its ``__iter__`` built
  the whole epoch before the first batch, so its time to the first batch is ``total_batches`` times
  its time per batch (extrapolated, not run);
- ``torch.utils.data.BatchSampler(RandomSampler)``: a plain shuffle with no axis, the floor.

Targets (issue 10): construction under 2 s, under 0.3 ms per batch.

Run: ``uv run python benchmarks/sampling.py [--anchors N] [--batches N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
from torch.utils.data import BatchSampler, RandomSampler

from viscy_data.sampler import FlexibleBatchSampler

BATCH_SIZE = 256
EXPERIMENTS = 20
LEAKY = 0.1
WINDOW_HOURS = 2.0
GLOBAL_FRACTION = 0.3


def make_anchors(n_anchors: int, seed: int = 0) -> pd.DataFrame:
    """Random anchors: experiments of uneven sizes, 30% infected, HPI on a 30 min grid over 0-48 h."""
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
    """Time the construction, the first batch and each of the next ``n`` batches, in seconds."""
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
    while True:
        yield sampler.batch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchors", type=int, default=2_000_000)
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    start = time.perf_counter()
    anchors = make_anchors(args.anchors)
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
    header = ["method", "init s", "first batch s", "ms per batch", "vs reference"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("-" * (len(name) + 2) for name in header) + "|")
    results = {name: time_iterator(build, batches, args.batches) for name, (build, batches) in methods.items()}
    reference_ms = 1e3 * statistics.mean(results["reference algorithm, all axes (baseline)"][2])
    total_batches = len(anchors) // BATCH_SIZE
    for name, (init_s, first_s, times) in results.items():
        mean_ms, median_ms = 1e3 * statistics.mean(times), 1e3 * statistics.median(times)
        if name.startswith("reference"):
            first = f"{total_batches * mean_ms / 1e3:.1f} (eager epoch, extrapolated)"
        else:
            first = f"{first_s:.4f}"
        print(f"| {name} | {init_s:.2f} | {first} | {mean_ms:.3f} ({median_ms:.3f}) | {reference_ms / mean_ms:.1f}x |")
    print("# targets: init < 2 s, < 0.3 ms per batch")


if __name__ == "__main__":
    main()
