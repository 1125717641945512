"""The synthetic plate that the example configs of ``applications/dynaclr/examples`` expect.

``examples/configs/fit.yml`` with ``fit_synthetic_cpu.yml`` (and ``predict.yml`` with
``predict_synthetic_cpu.yml``) read ``synthetic/plate.zarr`` and ``synthetic/tracks``:
a plate with a label-free ``Phase3D`` and an ``RFP`` infection-reporter channel, 5 Z slices,
192x192 images, 8 frames, infected and uninfected wells, dividing cells, tracks, ground-truth
annotations and normalization metadata (see :mod:`viscy_data.synthetic`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from viscy_data.synthetic import SyntheticPlate

__all__ = ["EXAMPLE_PLATE_SETTINGS", "write_example_plate"]

EXAMPLE_PLATE_SETTINGS: dict[str, Any] = {
    "channel_names": ("Phase3D", "RFP"),
    "z_slices": 5,
    "yx_size": (192, 192),
    "n_frames": 8,
    "cells_per_fov": 8,
}
"""Arguments of :func:`viscy_data.synthetic.write_synthetic_plate` that the example configs rely on."""


def write_example_plate(output_dir: str | Path = "synthetic", seed: int = 0, overwrite: bool = False) -> SyntheticPlate:
    """Write ``plate.zarr``, ``tracks/`` and ``annotations.csv`` into ``output_dir``.

    Parameters
    ----------
    output_dir : str or Path
        Directory to write into (created if needed).
    seed : int
        Seed of the synthetic cells; the same seed writes the same plate.
    overwrite : bool
        Replace an existing plate, tracks and annotations.

    Returns
    -------
    SyntheticPlate
        Paths and layout of what was written.

    Raises
    ------
    FileExistsError
        If the outputs exist and ``overwrite`` is False.
    """
    from viscy_data.synthetic import write_synthetic_plate

    root = Path(output_dir)
    return write_synthetic_plate(
        root / "plate.zarr",
        tracks_path=root / "tracks",
        annotations_path=root / "annotations.csv",
        seed=seed,
        overwrite=overwrite,
        **EXAMPLE_PLATE_SETTINGS,
    )
