"""Write the synthetic experiments that ``configs/experiments.yml`` and ``multi_experiment_fit.yml`` read.

Usage, from the repository root::

    uv run python applications/dynaclr/examples/make_synthetic_experiments.py    # -> synthetic/experiments/
    uv run python applications/dynaclr/examples/make_synthetic_experiments.py --output-dir data --overwrite

It writes three experiments (:data:`dynaclr.example_experiments.EXAMPLE_EXPERIMENTS`), each an HCS
OME-Zarr plate with its tracks and annotations under ``<output dir>/<name>/``, and their
``experiments.yml``. Their channel names (GFP in two, RFP in one) and frame intervals (30, 15 and
20 minutes) differ, as across real experiments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dynaclr.example_experiments import write_example_experiments
from dynaclr.experiment import ExperimentRegistry


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("synthetic/experiments"), help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument("--overwrite", action="store_true", help="replace existing plates, tracks and experiments.yml")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the experiments and print them; exit status 1 if outputs exist without --overwrite."""
    args = parse_args(argv)
    print(f"Writing the synthetic experiments under {args.output_dir} (seed {args.seed}) ...", flush=True)
    try:
        experiments_yaml = write_example_experiments(args.output_dir, seed=args.seed, overwrite=args.overwrite)
    except FileExistsError as error:
        print(f"{error}\nPass --overwrite to replace them.", file=sys.stderr)
        return 1
    registry = ExperimentRegistry.from_yaml(experiments_yaml)
    for experiment in registry.experiments:
        channels = ", ".join(experiment.training_channel_names)
        wells = "; ".join(f"{condition}: {', '.join(wells)}" for condition, wells in experiment.condition_wells.items())
        print(f"{experiment.name}: channels [{channels}], {experiment.interval_minutes:g} min/frame, {wells}")
    print(f"experiments: {experiments_yaml}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
