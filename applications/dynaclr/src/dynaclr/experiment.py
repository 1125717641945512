"""Experiments of a multi-experiment training run: ``ExperimentConfig`` and ``ExperimentRegistry``.

An experiments YAML holds a top-level ``experiments:`` list whose entries are
:class:`ExperimentConfig` fields::

    experiments:
      - name: 2025_07_22_SEC61
        data_path: /data/2025_07_22_SEC61.zarr
        tracks_path: /data/2025_07_22_SEC61_tracks
        channel_names: [Phase3D, GFP, Mito]
        source_channel: [Phase3D, GFP]
        condition_wells: {uninfected: [A/1, A/2], infected: [B/1, B/2]}
        interval_minutes: 30.0

:class:`ExperimentRegistry` validates them against their stores at construction and maps
every experiment's zarr channels onto the model's input channels (``channel_maps``).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from viscy_data.patch_reader import MISSING_CHANNEL

__all__ = ["MISSING_CHANNEL", "ExperimentConfig", "ExperimentRegistry"]

_logger = logging.getLogger(__name__)


_NAME_MODES = ("shared", "all")


@dataclass
class ExperimentConfig:
    """One experiment: an HCS OME-Zarr plate, its tracks, its wells' conditions and its timing.

    Attributes
    ----------
    name : str
        Unique name of the experiment.
    data_path : str
        HCS OME-Zarr plate. Relative paths are relative to the working directory.
    tracks_path : str
        Root of the per-FOV tracks CSVs, ``tracks_path/<row>/<col>/<fov>/<name>.csv``.
    channel_names : list[str]
        Every channel of the plate, in zarr order (checked against the plate's metadata).
    source_channel : list[str], optional
        Channels to train on, in model-channel order. With
        ``ExperimentRegistry(training_channels=None)`` position ``i`` of every experiment's
        list is model channel ``i`` (names may differ: GFP in one experiment, RFP in
        another). Default: every channel in ``channel_names``.
    condition_wells : dict[str, list[str]]
        Condition (e.g. ``"infected"``) to its wells (``"<row>/<col>"``, e.g. ``"B/1"``);
        must not be empty.
    interval_minutes : float
        Time between frames.
    start_hpi : float
        Hours post infection at frame 0.
    organelle : str
        Labelled organelle, informational.
    date : str
        Acquisition date, informational.
    moi : float
        Multiplicity of infection, informational.
    """

    name: str
    data_path: str
    tracks_path: str
    channel_names: list[str]
    source_channel: list[str] | None = None
    condition_wells: dict[str, list[str]] = field(default_factory=dict)
    interval_minutes: float = 30.0
    start_hpi: float = 0.0
    organelle: str = ""
    date: str = ""
    moi: float = 0.0

    @property
    def training_channel_names(self) -> list[str]:
        """``source_channel``, or every channel when it is not given."""
        return list(self.channel_names if self.source_channel is None else self.source_channel)


@dataclass
class ExperimentRegistry:
    """Validated experiments and the mapping of their channels onto the model's channels.

    ``training_channels`` chooses how the model's input channels are formed:

    - ``None`` (the reference behaviour): by position. Model channel ``i`` is
      ``source_channel[i]`` of each experiment (every channel when ``source_channel`` is not
      given), so the names may differ across experiments but the counts must agree.
      ``active_channels`` are the generic labels ``ch_0``, ``ch_1``...
    - ``"shared"``: by name, the channels in every experiment's training channels
      (``source_channel`` or, without it, ``channel_names``), in the first experiment's order.
    - ``"all"``: by name, the union of the experiments' training channels in order of first
      appearance. An experiment lacking a channel maps it to :data:`MISSING_CHANNEL` (-1):
      that channel is zero-filled for its samples.
    - a list of names: exactly those channels, in that order; each must be in every
      experiment's ``channel_names``.

    Construction fails fast (ValueError) on: an empty list, duplicate names, a non-positive
    ``interval_minutes``, empty ``condition_wells`` or a well listed under two conditions,
    ``source_channel`` names missing from ``channel_names``, a missing ``data_path`` or
    ``tracks_path``, ``channel_names`` differing from the plate's channels, differing channel
    counts (``training_channels=None``) and unknown or missing ``training_channels``. Each
    message names the experiment, the bad value and the valid choices. Wells of
    ``condition_wells`` that the plate does not have are logged as a warning (naming the
    experiment and the wells) and contribute no cells, as in the reference.

    Parameters
    ----------
    experiments : list[ExperimentConfig]
        The experiments (mappings of :class:`ExperimentConfig` fields are converted).
    training_channels : {"shared", "all"} or list[str], optional
        Channel resolution, see above.

    Attributes
    ----------
    active_channels : list[str]
        Label of each model channel: channel names, or ``ch_<i>`` with
        ``training_channels=None``.
    num_source_channels : int
        Number of model input channels.
    channel_maps : dict[str, dict[int, int]]
        Per experiment, model channel index to zarr channel index, or :data:`MISSING_CHANNEL`.

    Raises
    ------
    ValueError
        On invalid experiments or ``training_channels``, see above.

    Examples
    --------
    Source channels ``[Phase3D, RFP]`` of a plate with ``[Phase3D, GFP, RFP]`` give
    ``channel_maps[name] == {0: 0, 1: 2}``.
    """

    experiments: list[ExperimentConfig]
    training_channels: str | list[str] | None = None
    active_channels: list[str] = field(init=False)
    num_source_channels: int = field(init=False)
    channel_maps: dict[str, dict[int, int]] = field(init=False)

    def __post_init__(self) -> None:
        self.experiments = [
            experiment if isinstance(experiment, ExperimentConfig) else ExperimentConfig(**experiment)
            for experiment in self.experiments
        ]
        _check_names(self.experiments)
        for experiment in self.experiments:
            _check_experiment(experiment)
        self.active_channels, self.channel_maps = _resolve_channels(self.experiments, self.training_channels)
        self.num_source_channels = len(self.active_channels)

    @classmethod
    def from_yaml(cls, path: str | Path, training_channels: str | list[str] | None = None) -> ExperimentRegistry:
        """Read a registry from a YAML file with a top-level ``experiments:`` list.

        Parameters
        ----------
        path : str or Path
            The experiments YAML.
        training_channels : {"shared", "all"} or list[str], optional
            Channel resolution, as for the constructor.

        Returns
        -------
        ExperimentRegistry
            The validated registry.

        Raises
        ------
        ValueError
            If the file has no ``experiments:`` list, an entry is not a mapping, or the
            experiments are invalid.
        TypeError
            If an entry has keys that are not :class:`ExperimentConfig` fields, or lacks a
            required one.
        """
        with open(path) as stream:
            data = yaml.safe_load(stream)
        if not isinstance(data, Mapping) or not isinstance(data.get("experiments"), list):
            found = list(data) if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"{path}: expected a top-level 'experiments:' list, found {found}.")
        known = [f.name for f in fields(ExperimentConfig)]
        experiments = []
        for position, entry in enumerate(data["experiments"]):
            if not isinstance(entry, Mapping):
                raise ValueError(f"{path}: experiments[{position}] must be a mapping of fields {known}, got {entry!r}.")
            unknown = sorted(set(entry) - set(known))
            if unknown:
                raise TypeError(f"{path}: experiments[{position}] has unknown keys {unknown}; valid keys: {known}.")
            try:
                experiments.append(ExperimentConfig(**entry))
            except TypeError as error:
                raise TypeError(f"{path}: experiments[{position}]: {error}") from error
        return cls(experiments, training_channels=training_channels)

    @property
    def names(self) -> list[str]:
        """Experiment names, in registry order."""
        return [experiment.name for experiment in self.experiments]

    def get_experiment(self, name: str) -> ExperimentConfig:
        """Return the experiment called ``name``.

        Raises
        ------
        KeyError
            If there is none; the message lists the names.
        """
        for experiment in self.experiments:
            if experiment.name == name:
                return experiment
        raise KeyError(f"Experiment '{name}' not found in registry. Available: {self.names}")

    def subset(self, names: Sequence[str]) -> ExperimentRegistry:
        """Return a registry of some of the experiments that keeps this registry's model channels.

        The subset's ``active_channels`` and ``channel_maps`` are this registry's, so a model
        trained on one subset (say the training experiments) reads another (the validation
        experiments) with the same channels, also with ``training_channels="shared"`` or ``"all"``.

        Parameters
        ----------
        names : Sequence[str]
            Experiment names, in the order wanted.

        Returns
        -------
        ExperimentRegistry
            The subset (its experiments are not validated again).

        Raises
        ------
        KeyError
            If a name is unknown.
        """
        subset = copy.copy(self)
        subset.experiments = [self.get_experiment(name) for name in names]
        subset.channel_maps = {name: dict(self.channel_maps[name]) for name in names}
        subset.active_channels = list(self.active_channels)
        return subset

    def tau_range_frames(self, name: str, tau_range_hours: Sequence[float]) -> tuple[int, int]:
        """Convert a tau range in hours to frames of one experiment.

        ``(round(h_min * 60 / interval), round(h_max * 60 / interval))`` with Python's
        ``round``; e.g. ``(0.5, 2.0)`` hours at 30 minutes per frame is ``(1, 4)``, at 15 is
        ``(2, 8)``. Logs a warning when the range holds fewer than 2 valid frames (offset 0
        is never a valid positive).

        Parameters
        ----------
        name : str
            Experiment name.
        tau_range_hours : Sequence[float]
            ``(h_min, h_max)``.

        Returns
        -------
        tuple[int, int]
            ``(min_frames, max_frames)``.

        Raises
        ------
        KeyError
            If the experiment is unknown.
        ValueError
            If ``tau_range_hours`` is not a pair with ``h_min <= h_max``.
        """
        experiment = self.get_experiment(name)
        if len(tau_range_hours) != 2 or tau_range_hours[0] > tau_range_hours[1]:
            raise ValueError(f"tau_range_hours must be (min, max) with min <= max, got {tuple(tau_range_hours)}.")
        frames_per_hour = 60.0 / experiment.interval_minutes
        low, high = (round(hours * frames_per_hour) for hours in tau_range_hours)
        valid = high - low + 1 - int(low <= 0 <= high)
        if valid < 2:
            _logger.warning(
                "Experiment '%s': tau_range_hours %s is frames (%d, %d) at %s minutes per frame, "
                "fewer than 2 valid frames (offset 0 excluded).",
                name,
                tuple(tau_range_hours),
                low,
                high,
                experiment.interval_minutes,
            )
        return low, high


def _check_names(experiments: list[ExperimentConfig]) -> None:
    if not experiments:
        raise ValueError("Empty experiments list: an ExperimentRegistry needs at least one ExperimentConfig.")
    names = [experiment.name for experiment in experiments]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"Duplicate experiment name '{name}': names must be unique, got {names}.")
        seen.add(name)


def _check_experiment(experiment: ExperimentConfig) -> None:
    """Validate one experiment's fields, then its plate and tracks on disk."""
    prefix = f"Experiment '{experiment.name}'"
    if not experiment.interval_minutes > 0:
        raise ValueError(f"{prefix}: interval_minutes must be positive, got {experiment.interval_minutes}.")
    channels = list(experiment.channel_names)
    if not channels or len(set(channels)) != len(channels):
        raise ValueError(f"{prefix}: channel_names must be non-empty and unique, got {channels}.")
    if experiment.source_channel is not None:
        missing = [name for name in experiment.source_channel if name not in channels]
        if missing or not experiment.source_channel:
            raise ValueError(
                f"{prefix}: source_channel {list(experiment.source_channel)} must be a non-empty subset of "
                f"channel_names {channels}; not found: {missing}."
            )
    if not experiment.condition_wells:
        raise ValueError(
            f"{prefix}: condition_wells must not be empty; map each condition to its wells, "
            "e.g. {uninfected: [A/1], infected: [B/1]}."
        )
    wells = [well for condition_wells in experiment.condition_wells.values() for well in condition_wells]
    repeated = sorted({well for well in wells if wells.count(well) > 1})
    if repeated:
        raise ValueError(
            f"{prefix}: wells {repeated} appear more than once in condition_wells {experiment.condition_wells}."
        )
    data_path = Path(experiment.data_path)
    if not data_path.exists():
        raise ValueError(f"{prefix}: data_path does not exist: {data_path}")
    if not Path(experiment.tracks_path).is_dir():
        raise ValueError(f"{prefix}: tracks_path does not exist or is not a directory: {experiment.tracks_path}")
    zarr_channels, plate_wells = _read_plate_layout(prefix, data_path)
    if zarr_channels != channels:
        raise ValueError(
            f"{prefix}: channel_names mismatch. Expected (from config): {channels}, got (from zarr): {zarr_channels}."
        )
    absent = [well for well in wells if well.strip("/") not in plate_wells]
    if absent:
        _logger.warning(
            "%s: condition_wells lists wells %s that %s lacks; they contribute no cells. Its wells: %s.",
            prefix,
            absent,
            data_path,
            plate_wells,
        )


def _read_plate_layout(prefix: str, data_path: Path) -> tuple[list[str], list[str]]:
    """Channel names and well names (``"<row>/<col>"``) of an HCS plate."""
    from viscy_data.ome_compat import open_ome_zarr

    try:
        plate = open_ome_zarr(data_path, layout="hcs", mode="r")
    except Exception as error:
        raise ValueError(f"{prefix}: cannot open {data_path} as an HCS OME-Zarr plate: {error}") from error
    with plate:
        return list(plate.channel_names), [name.strip("/") for name, _ in plate.wells()]


def _resolve_channels(
    experiments: list[ExperimentConfig], training_channels: str | Sequence[str] | None
) -> tuple[list[str], dict[str, dict[int, int]]]:
    """``(active_channels, channel_maps)`` for one of the four resolution modes."""
    if training_channels is None:
        counts = {experiment.name: len(experiment.training_channel_names) for experiment in experiments}
        if len(set(counts.values())) > 1:
            found = ", ".join(f"'{name}': {count}" for name, count in counts.items())
            raise ValueError(
                f"All experiments must have the same number of source_channel entries, but found: {found}. "
                "Align them, or set training_channels to 'shared', 'all' or a list of channel names."
            )
        maps = {
            experiment.name: {
                index: experiment.channel_names.index(name)
                for index, name in enumerate(experiment.training_channel_names)
            }
            for experiment in experiments
        }
        return [f"ch_{index}" for index in range(next(iter(counts.values())))], maps
    if isinstance(training_channels, str):
        if training_channels not in _NAME_MODES:
            raise ValueError(
                f"training_channels {training_channels!r} is not one of {list(_NAME_MODES)}, a list of channel "
                "names, or None."
            )
        subsets = [experiment.training_channel_names for experiment in experiments]
        if training_channels == "shared":
            active = [name for name in subsets[0] if all(name in subset for subset in subsets)]
            if not active:
                listed = {experiment.name: subset for experiment, subset in zip(experiments, subsets, strict=True)}
                raise ValueError(f"training_channels='shared': no channel is in every experiment; channels: {listed}.")
        else:
            active = list(dict.fromkeys(name for subset in subsets for name in subset))
        return active, {
            experiment.name: {
                index: experiment.channel_names.index(name) if name in subset else MISSING_CHANNEL
                for index, name in enumerate(active)
            }
            for experiment, subset in zip(experiments, subsets, strict=True)
        }
    active = list(training_channels)
    if not active or len(set(active)) != len(active):
        raise ValueError(f"training_channels must be a non-empty list of unique channel names, got {active}.")
    for experiment in experiments:
        missing = [name for name in active if name not in experiment.channel_names]
        if missing:
            raise ValueError(
                f"Experiment '{experiment.name}' has no channels {missing} of training_channels {active}; "
                f"its channels: {list(experiment.channel_names)}. Use training_channels='all' to zero-fill "
                "missing channels."
            )
    return active, {
        experiment.name: {index: experiment.channel_names.index(name) for index, name in enumerate(active)}
        for experiment in experiments
    }
