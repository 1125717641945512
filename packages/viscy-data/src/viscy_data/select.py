"""Well and FOV selection on HCS plates."""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence

from iohub.ngff import Plate, Position
from iohub.ngff.nodes import Well

from viscy_data.ome_compat import fov_name

__all__ = ["SelectWell", "filter_fovs", "filter_wells", "select_positions"]

_logger = logging.getLogger(__name__)


def filter_wells(plate: Plate, include_wells: Sequence[str] | None) -> Generator[Well, None, None]:
    """Yield the wells named in ``include_wells`` (e.g. ``"A/1"``), or every well when None.

    Raises
    ------
    ValueError
        If ``include_wells`` is empty or names a well the plate does not have; the message
        lists the plate's wells.
    """
    wells = dict(plate.wells())
    if include_wells is not None:
        unknown = [name for name in include_wells if name not in wells]
        if unknown or not include_wells:
            problem = f"unknown wells {unknown}" if unknown else "an empty well selection"
            raise ValueError(f"include_wells has {problem}; the plate has wells {sorted(wells)}.")
    for name, well in wells.items():
        if include_wells is None or name in include_wells:
            yield well


def filter_fovs(well: Well, exclude_fovs: Sequence[str] | None) -> Generator[Position, None, None]:
    """Yield the positions of a well whose name (e.g. ``"A/1/0"``) is not excluded."""
    excluded = set(exclude_fovs or ())
    for _, position in well.positions():
        if fov_name(position) not in excluded:
            yield position


def select_positions(
    plate: Plate, include_wells: Sequence[str] | None, exclude_fovs: Sequence[str] | None
) -> list[Position]:
    """Positions of the included wells minus the excluded FOVs, logging what was left out."""
    positions = [
        position for well in filter_wells(plate, include_wells) for position in filter_fovs(well, exclude_fovs)
    ]
    if exclude_fovs:
        present = {fov_name(position) for _, position in plate.positions()}
        unknown = sorted(set(exclude_fovs) - present)
        if unknown:
            _logger.warning("exclude_fovs names %d FOV(s) the plate does not have: %s", len(unknown), unknown)
        _logger.info("Excluded %d FOV(s); %d selected.", len(set(exclude_fovs) & present), len(positions))
    return positions


class SelectWell:
    """Mixin selecting the FOVs used for fitting.

    Attributes
    ----------
    _include_wells : list[str] or None
        Wells to use, e.g. ``["A/1", "B/2"]``; all when None.
    _exclude_fovs : list[str] or None
        FOVs to leave out, e.g. ``["A/1/0"]``.
    """

    _include_wells: list[str] | None
    _exclude_fovs: list[str] | None

    def _filter_fit_fovs(self, plate: Plate) -> list[Position]:
        """Return the selected positions of ``plate``.

        Raises
        ------
        ValueError
            If fewer than 2 FOVs remain, or the well selection is empty or unknown.
        """
        positions = select_positions(plate, self._include_wells, self._exclude_fovs)
        if len(positions) < 2:
            raise ValueError(
                f"At least 2 FOVs are required for training and validation; {len(positions)} selected "
                f"with include_wells={self._include_wells} and exclude_fovs={self._exclude_fovs}."
            )
        return positions
