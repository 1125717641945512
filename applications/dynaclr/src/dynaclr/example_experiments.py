"""The synthetic experiments that ``applications/dynaclr/examples/configs/experiments.yml`` names.

Three experiments in the shape of the reference's example, written by
:func:`viscy_data.synthetic.write_synthetic_plate` under ``synthetic/experiments/``:

- ``2025_07_22_SEC61``: channels ``[Phase3D, GFP, Mito]`` (trained on Phase3D and the GFP
  reporter), 30 minutes per frame, wells ``A/1, A/2`` uninfected and ``B/1, B/2`` infected;
- ``2025_08_15_TOMM20``: channels ``[Phase3D, RFP]``, 15 minutes per frame, ``A/1``
  uninfected, ``B/1`` infected and ``C/1`` mock;
- ``2025_09_03_SEC61``: a second SEC61 experiment, channels ``[Phase3D, GFP]``, 20 minutes per
  frame, ``A/1`` uninfected and ``B/1`` infected.

The channel names and frame intervals differ, as across real experiments; positionally, GFP
and RFP are both model channel 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["EXAMPLE_EXPERIMENTS", "EXAMPLE_EXPERIMENT_PLATE_SETTINGS", "write_example_experiments"]

EXAMPLE_EXPERIMENT_PLATE_SETTINGS: dict[str, Any] = {
    "z_slices": 5,
    "yx_size": (128, 128),
    "cells_per_fov": 6,
    "fovs_per_well": 2,
}
"""Arguments of :func:`viscy_data.synthetic.write_synthetic_plate` shared by every example experiment."""

EXAMPLE_EXPERIMENTS: list[dict[str, Any]] = [
    {
        "name": "2025_07_22_SEC61",
        "channel_names": ["Phase3D", "GFP", "Mito"],
        "source_channel": ["Phase3D", "GFP"],
        "condition_wells": {"uninfected": ["A/1", "A/2"], "infected": ["B/1", "B/2"]},
        "interval_minutes": 30.0,
        "start_hpi": 3.0,
        "organelle": "endoplasmic_reticulum",
        "date": "2025-07-22",
        "moi": 1.0,
        "n_frames": 8,
    },
    {
        "name": "2025_08_15_TOMM20",
        "channel_names": ["Phase3D", "RFP"],
        "source_channel": ["Phase3D", "RFP"],
        "condition_wells": {"uninfected": ["A/1"], "infected": ["B/1"], "mock": ["C/1"]},
        "interval_minutes": 15.0,
        "start_hpi": 2.0,
        "organelle": "mitochondria",
        "date": "2025-08-15",
        "moi": 0.5,
        "n_frames": 12,
    },
    {
        "name": "2025_09_03_SEC61",
        "channel_names": ["Phase3D", "GFP"],
        "source_channel": ["Phase3D", "GFP"],
        "condition_wells": {"uninfected": ["A/1"], "infected": ["B/1"]},
        "interval_minutes": 20.0,
        "start_hpi": 4.0,
        "organelle": "endoplasmic_reticulum",
        "date": "2025-09-03",
        "moi": 1.0,
        "n_frames": 9,
    },
]
"""The experiments: :class:`dynaclr.experiment.ExperimentConfig` fields (less the paths) plus ``n_frames``."""


def write_example_experiments(
    output_dir: str | Path = "synthetic/experiments",
    seed: int = 0,
    overwrite: bool = False,
    infection_phenotype: str = "brightening",
    plate_settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write the example experiments' plates and tracks, and their ``experiments.yml``.

    Each experiment goes to ``output_dir/<name>/`` (``plate.zarr``, ``tracks/``,
    ``annotations.csv``); ``output_dir/experiments.yml`` lists them with paths under
    ``output_dir`` as given (a relative ``output_dir`` gives paths relative to the working
    directory, as in ``examples/configs/experiments.yml``).

    Parameters
    ----------
    output_dir : str or Path
        Directory to write into (created if needed).
    seed : int
        Seed of the synthetic cells; experiment ``i`` uses ``seed + i``.
    overwrite : bool
        Replace existing plates, tracks, annotations and ``experiments.yml``.
    infection_phenotype : {"brightening", "relocalization"}
        What the reporter of infected cells does
        (:data:`viscy_data.synthetic.INFECTION_PHENOTYPES`).
    plate_settings : Mapping, optional
        Arguments of :func:`~viscy_data.synthetic.write_synthetic_plate` that replace those of
        :data:`EXAMPLE_EXPERIMENT_PLATE_SETTINGS` and each experiment's ``n_frames`` (e.g.
        ``{"cells_per_fov": 10, "n_frames": 24}``).

    Returns
    -------
    Path
        The written ``experiments.yml``.

    Raises
    ------
    FileExistsError
        If an output exists and ``overwrite`` is False.
    """
    from viscy_data.synthetic import write_synthetic_plate

    root = Path(output_dir)
    experiments_yaml = root / "experiments.yml"
    if experiments_yaml.exists() and not overwrite:
        raise FileExistsError(f"Refusing to overwrite {experiments_yaml}; pass overwrite=True to replace.")
    entries = []
    for offset, settings in enumerate(EXAMPLE_EXPERIMENTS):
        fields = {key: value for key, value in settings.items() if key != "n_frames"}
        directory = root / fields["name"]
        well_conditions = {well: condition for condition, wells in fields["condition_wells"].items() for well in wells}
        plate = write_synthetic_plate(
            directory / "plate.zarr",
            tracks_path=directory / "tracks",
            annotations_path=directory / "annotations.csv",
            channel_names=fields["channel_names"],
            well_conditions=well_conditions,
            interval_minutes=fields["interval_minutes"],
            seed=seed + offset,
            overwrite=overwrite,
            infection_phenotype=infection_phenotype,
            **{"n_frames": settings["n_frames"], **EXAMPLE_EXPERIMENT_PLATE_SETTINGS, **dict(plate_settings or {})},
        )
        entries.append(
            {
                "name": fields.pop("name"),
                "data_path": str(plate.store_path),
                "tracks_path": str(plate.tracks_path),
                **fields,
            }
        )
    experiments_yaml.write_text(yaml.safe_dump({"experiments": entries}, sort_keys=False))
    return experiments_yaml
