"""Write the synthetic plate that the example configs and the README walk-through read.

Usage, from the repository root::

    uv run python applications/dynaclr/examples/make_synthetic_data.py            # -> synthetic/
    uv run python applications/dynaclr/examples/make_synthetic_data.py --output-dir data --overwrite

It writes, under the output directory:

- ``plate.zarr``: an HCS OME-Zarr plate with channels ``Phase3D`` (label-free-like) and ``RFP``
  (an infection reporter that turns bright and nuclear in infected cells), 4 wells x 2 FOVs,
  8 time points, 5 Z slices of 192 x 192 pixels, with normalization metadata;
- ``tracks/<row>/<col>/<fov>/tracks.csv``: Ultrack tracks of moving, dividing cells;
- ``annotations.csv``: the ground truth per cell and time point (``infection_state``,
  ``cell_division_state``).

Wells ``A/1`` and ``B/1`` are uninfected, ``A/2`` and ``B/2`` infected
(:data:`viscy_data.synthetic.DEFAULT_WELL_CONDITIONS`). The plate's settings are
:data:`dynaclr.example_data.EXAMPLE_PLATE_SETTINGS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dynaclr.example_data import write_example_plate
from viscy_data.synthetic import SyntheticPlate


def describe(plate: SyntheticPlate) -> str:
    """Summarize a written plate: paths, shape, wells and their conditions, cell counts.

    Parameters
    ----------
    plate : SyntheticPlate
        The plate.

    Returns
    -------
    str
        A few lines of text.
    """
    annotations = plate.read_annotations()
    infected = int((annotations["infection_state"] == 1).sum())
    wells = ", ".join(f"{well} {condition}" for well, condition in plate.well_conditions.items())
    return "\n".join(
        [
            f"plate:       {plate.store_path} (T, C, Z, Y, X) = {plate.shape}, channels {list(plate.channel_names)}",
            f"FOVs:        {len(plate.fov_names)} ({', '.join(plate.fov_names)})",
            f"wells:       {wells}",
            f"tracks:      {plate.tracks_path}/<row>/<col>/<fov>/tracks.csv",
            f"annotations: {plate.annotations_path} ({len(annotations)} cells x time points, {infected} infected)",
        ]
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("synthetic"), help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing plate, tracks and annotations")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the plate and print what was written; exit status 1 if outputs exist without --overwrite."""
    args = parse_args(argv)
    print(f"Writing the synthetic plate under {args.output_dir} (seed {args.seed}) ...", flush=True)
    try:
        plate = write_example_plate(args.output_dir, seed=args.seed, overwrite=args.overwrite)
    except FileExistsError as error:
        print(f"{error}\nPass --overwrite to replace them.", file=sys.stderr)
        return 1
    print(describe(plate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
