"""Ultrack-style tracks tables: one CSV per FOV, ``tracks_path/<row>/<column>/<fov>/<name>.csv``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from viscy_data._utils import _require_columns

__all__ = ["TRACK_REQUIRED_COLUMNS", "read_tracks_csv"]

TRACK_REQUIRED_COLUMNS = ("track_id", "t", "id", "parent_track_id", "parent_id", "y", "x")
"""Columns every tracks table needs; ``z`` is optional."""


def read_tracks_csv(directory: Path, what: str) -> pd.DataFrame:
    """Read the one tracks CSV of a FOV's directory, checking its columns.

    Parameters
    ----------
    directory : Path
        The FOV's directory under the tracks root, e.g. ``tracks_path / "A/1/0"``.
    what : str
        Names the FOV in error messages, e.g. ``"FOV A/1/0"``.

    Returns
    -------
    pandas.DataFrame
        The table as read.

    Raises
    ------
    FileNotFoundError
        If the directory holds no CSV.
    ValueError
        If it holds more than one (which one is meant would be a guess), or the CSV lacks one of
        :data:`TRACK_REQUIRED_COLUMNS` (the message lists the columns present).
    """
    directory = Path(directory)
    csvs = sorted(directory.glob("*.csv"))
    if not csvs:
        raise FileNotFoundError(
            f"{what}: no tracks CSV in {directory} (expected tracks_path/<row>/<column>/<fov>/<name>.csv)."
        )
    if len(csvs) > 1:
        names = [csv.name for csv in csvs]
        raise ValueError(f"{what}: {len(csvs)} tracks CSVs in {directory} ({names}); keep exactly one.")
    table = pd.read_csv(csvs[0])
    _require_columns(table.columns, TRACK_REQUIRED_COLUMNS, f"{what}: tracks CSV {csvs[0]}")
    return table
