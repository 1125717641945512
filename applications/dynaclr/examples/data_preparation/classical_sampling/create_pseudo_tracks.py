"""Pseudo tracks from segmentation masks, for classical (non-tracked) contrastive sampling.

``TripletDataModule`` and the multi-experiment data module read cell positions from Ultrack
tracks CSVs. Without tracking, this script writes such CSVs from label images: each label of
each frame becomes a "cell" at its centroid, with ``track_id = label``, ``id = 100000 + label``
and no parents (``parent_track_id = parent_id = -1``). A label number that appears in several
frames shares its ``track_id`` across them, so train on pseudo tracks with
``time_interval: any`` (the positive is an augmented copy of the anchor), not with a positive
from the next frame.

The labels are an integer (or integer-valued) array of every position of an HCS OME-Zarr
plate: a channel of the image array (``--label-channel``), or the single channel of another
array (``--label-array``), in the image plate or in a separate label plate with the same
positions. One CSV per FOV is written to
``<tracks root>/<row>/<col>/<fov>/<row>_<col>_<fov>_tracks.csv`` with the columns
``track_id, t, id, parent_track_id, parent_id, z, y, x`` (centroids in pixels; ``z`` is 0 for
single-slice masks).

Usage, from the repository root::

    script=applications/dynaclr/examples/data_preparation/classical_sampling/create_pseudo_tracks.py
    uv run python $script labels.zarr --tracks-root pseudo_tracks        # a one-channel label plate
    uv run python $script plate.zarr --label-channel nuclei_labels --tracks-root pseudo_tracks
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.measure import regionprops_table

from viscy_data.ome_compat import fov_name, open_ome_zarr
from viscy_data.synthetic import TRACK_COLUMNS

ID_OFFSET = 100_000
"""``id = ID_OFFSET + label``."""


def frame_pseudo_tracks(labels: np.ndarray, t: int) -> pd.DataFrame:
    """One row per label of one frame, at the label's centroid.

    Parameters
    ----------
    labels : np.ndarray
        Integer label image ``(Z, Y, X)`` of frame ``t``; 0 is background.
    t : int
        Time point.

    Returns
    -------
    pd.DataFrame
        Columns :data:`~viscy_data.synthetic.TRACK_COLUMNS`, one row per label, in label order.
    """
    props = regionprops_table(labels, properties=("label", "centroid"))
    label = props["label"].astype(np.int64)
    table = pd.DataFrame(
        {
            "track_id": label,
            "t": t,
            "id": ID_OFFSET + label,
            "parent_track_id": -1,
            "parent_id": -1,
            "z": props["centroid-0"],
            "y": props["centroid-1"],
            "x": props["centroid-2"],
        }
    )
    return table[list(TRACK_COLUMNS)]


def _integer_labels(values: np.ndarray, where: str) -> np.ndarray:
    """Cast integer-valued labels to int64, refusing fractional values."""
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64, copy=False)
    integral = values.astype(np.int64)
    if not np.array_equal(integral, values):
        raise ValueError(f"{where} holds non-integer values (dtype {values.dtype}); expected a label image.")
    return integral


def tracks_csv_path(tracks_root: Path, name: str) -> Path:
    """``<tracks_root>/<row>/<col>/<fov>/<row>_<col>_<fov>_tracks.csv`` of FOV ``name`` (``"A/1/0"``)."""
    return tracks_root / name / f"{name.replace('/', '_')}_tracks.csv"


def create_pseudo_tracks(
    label_plate: str | Path,
    tracks_root: str | Path,
    label_channel: str | None = None,
    label_array: str = "0",
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write one pseudo-tracks CSV per FOV of a plate from its label images.

    Parameters
    ----------
    label_plate : str or Path
        HCS OME-Zarr plate holding the labels.
    tracks_root : str or Path
        Root directory of the CSVs.
    label_channel : str, optional
        Channel of ``label_array`` holding the labels; required when the array has more than
        one channel.
    label_array : str
        Image array of each position, ``(T, C, Z, Y, X)``.
    overwrite : bool
        Replace existing CSVs.

    Returns
    -------
    dict[str, Path]
        FOV name to the CSV written.

    Raises
    ------
    FileExistsError
        If a CSV exists and ``overwrite`` is False (nothing is written then).
    ValueError
        For an unknown channel or array (the message lists those present), a multi-channel array
        without ``label_channel``, or non-integer labels.
    """
    tracks_root = Path(tracks_root)
    with open_ome_zarr(label_plate, layout="hcs", mode="r") as plate:
        channel_names = list(plate.channel_names)
        if label_channel is not None and label_channel not in channel_names:
            raise ValueError(f"Channel {label_channel!r} not found; channels present: {channel_names}.")
        images = {}
        for _, position in plate.positions():
            name = fov_name(position)
            arrays = list(position.array_keys())
            if label_array not in arrays:
                raise ValueError(f"FOV {name} has no array {label_array!r}; arrays present: {arrays}.")
            images[name] = position[label_array]
            if label_channel is None and images[name].shape[1] != 1:
                raise ValueError(
                    f"Array {label_array!r} of FOV {name} has {images[name].shape[1]} channels {channel_names}: "
                    "choose the label channel with --label-channel."
                )
        channel = 0 if label_channel is None else channel_names.index(label_channel)
        targets = {name: tracks_csv_path(tracks_root, name) for name in images}
        existing = [str(path) for path in targets.values() if path.exists()]
        if existing and not overwrite:
            raise FileExistsError(f"Refusing to overwrite {', '.join(existing)}; pass --overwrite to replace them.")
        for name, image in images.items():
            where = f"Channel {channel_names[channel]!r} of array {label_array!r} of FOV {name}"
            frames = [
                frame_pseudo_tracks(_integer_labels(np.asarray(image[t, channel]), where), t)
                for t in range(image.shape[0])
            ]
            table = pd.concat(frames, ignore_index=True)
            targets[name].parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(targets[name], index=False)
            print(f"{name}: {len(table)} cells in {image.shape[0]} frames -> {targets[name]}", flush=True)
    return targets


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("label_plate", type=Path, help="HCS OME-Zarr plate with the label images")
    parser.add_argument("--tracks-root", type=Path, required=True, help="root directory of the pseudo-tracks CSVs")
    parser.add_argument("--label-channel", default=None, help="channel holding the labels (if the array has several)")
    parser.add_argument("--label-array", default="0", help="image array of each position (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing CSVs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the pseudo tracks; exit status 1 when outputs exist without --overwrite or the input is invalid."""
    args = parse_args(argv)
    try:
        written = create_pseudo_tracks(
            args.label_plate,
            args.tracks_root,
            label_channel=args.label_channel,
            label_array=args.label_array,
            overwrite=args.overwrite,
        )
    except (FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Wrote pseudo tracks of {len(written)} FOVs under {args.tracks_root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
