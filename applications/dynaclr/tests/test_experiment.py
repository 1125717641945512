"""MEXP-01..05: ExperimentConfig, ExperimentRegistry channel resolution, validation and YAML."""

import logging
import re
from dataclasses import asdict, fields
from pathlib import Path

import pytest
import yaml

import dynaclr
from dynaclr.example_experiments import EXAMPLE_EXPERIMENTS, write_example_experiments
from dynaclr.experiment import MISSING_CHANNEL, ExperimentConfig, ExperimentRegistry
from viscy_data.synthetic import write_synthetic_plate

from .conftest import CONFIGS

# Three small experiments with different channels, wells and frame intervals.
PLATES = {
    "exp_a": {
        "channels": ["Phase3D", "GFP", "Mito"],
        "wells": {"uninfected": ["A/1"], "infected": ["B/1"]},
        "minutes": 30,
    },
    "exp_b": {
        "channels": ["Phase3D", "RFP"],
        "wells": {"uninfected": ["A/1"], "infected": ["B/1"], "mock": ["C/1"]},
        "minutes": 15,
    },
    "exp_c": {"channels": ["Phase3D", "GFP"], "wells": {"uninfected": ["A/1"], "infected": ["A/2"]}, "minutes": 20},
}


@pytest.fixture(scope="module")
def plates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root holding ``<name>/plate.zarr`` and ``<name>/tracks`` for every experiment of PLATES."""
    root = tmp_path_factory.mktemp("experiments")
    for seed, (name, plate) in enumerate(PLATES.items()):
        write_synthetic_plate(
            root / name / "plate.zarr",
            tracks_path=root / name / "tracks",
            channel_names=plate["channels"],
            well_conditions={well: condition for condition, wells in plate["wells"].items() for well in wells},
            interval_minutes=plate["minutes"],
            fovs_per_well=1,
            n_frames=2,
            z_slices=1,
            yx_size=(24, 24),
            cells_per_fov=1,
            seed=seed,
        )
    return root


def config(plates: Path, name: str, **overrides) -> ExperimentConfig:
    plate = PLATES[name]
    settings = {
        "name": name,
        "data_path": str(plates / name / "plate.zarr"),
        "tracks_path": str(plates / name / "tracks"),
        "channel_names": list(plate["channels"]),
        "condition_wells": plate["wells"],
        "interval_minutes": float(plate["minutes"]),
    }
    return ExperimentConfig(**{**settings, **overrides})


def test_config_fields_and_defaults():
    experiment = ExperimentConfig(
        name="e", data_path="p.zarr", tracks_path="t", channel_names=["Phase3D"], condition_wells={"x": ["A/1"]}
    )
    assert [f.name for f in fields(ExperimentConfig)] == [
        "name",
        "data_path",
        "tracks_path",
        "channel_names",
        "source_channel",
        "condition_wells",
        "interval_minutes",
        "start_hpi",
        "organelle",
        "date",
        "moi",
    ]
    assert experiment.source_channel is None
    assert (experiment.interval_minutes, experiment.start_hpi, experiment.organelle, experiment.date) == (
        30.0,
        0.0,
        "",
        "",
    )
    assert experiment.moi == 0.0
    assert experiment.training_channel_names == ["Phase3D"]
    positional = ExperimentConfig("e", "p.zarr", "t", ["Phase3D", "GFP"], ["GFP"], {"x": ["A/1"]})
    assert positional.source_channel == ["GFP"]
    assert positional.training_channel_names == ["GFP"]


def test_exported_from_dynaclr():
    assert dynaclr.ExperimentConfig is ExperimentConfig
    assert dynaclr.ExperimentRegistry is ExperimentRegistry


def test_source_channel_maps_to_zarr_indices(plates):
    registry = ExperimentRegistry([config(plates, "exp_a", source_channel=["Phase3D", "Mito"])])
    assert registry.channel_maps == {"exp_a": {0: 0, 1: 2}}
    assert registry.num_source_channels == 2
    assert registry.active_channels == ["ch_0", "ch_1"]


def test_positional_alignment_across_experiments(plates):
    """Without training_channels, GFP (exp_a) and RFP (exp_b) are both model channel 1."""
    registry = ExperimentRegistry(
        [
            config(plates, "exp_a", source_channel=["Phase3D", "GFP"]),
            config(plates, "exp_b", source_channel=["Phase3D", "RFP"]),
        ]
    )
    assert registry.channel_maps == {"exp_a": {0: 0, 1: 1}, "exp_b": {0: 0, 1: 1}}
    assert registry.num_source_channels == 2
    swapped = ExperimentRegistry(
        [
            config(plates, "exp_a", source_channel=["Mito", "Phase3D"]),
            config(plates, "exp_b", source_channel=["RFP", "Phase3D"]),
        ]
    )
    assert swapped.channel_maps == {"exp_a": {0: 2, 1: 0}, "exp_b": {0: 1, 1: 0}}


def test_positional_without_source_channel_uses_every_channel(plates):
    registry = ExperimentRegistry([config(plates, "exp_b"), config(plates, "exp_c")])
    assert registry.channel_maps == {"exp_b": {0: 0, 1: 1}, "exp_c": {0: 0, 1: 1}}
    assert registry.active_channels == ["ch_0", "ch_1"]


def test_shared_channels(plates):
    registry = ExperimentRegistry(
        [config(plates, "exp_a"), config(plates, "exp_b"), config(plates, "exp_c")], training_channels="shared"
    )
    assert registry.active_channels == ["Phase3D"]
    assert registry.num_source_channels == 1
    assert registry.channel_maps == {"exp_a": {0: 0}, "exp_b": {0: 0}, "exp_c": {0: 0}}
    pair = ExperimentRegistry([config(plates, "exp_a"), config(plates, "exp_c")], training_channels="shared")
    assert pair.active_channels == ["Phase3D", "GFP"]
    assert pair.channel_maps == {"exp_a": {0: 0, 1: 1}, "exp_c": {0: 0, 1: 1}}


def test_shared_channels_respect_source_channel(plates):
    registry = ExperimentRegistry(
        [config(plates, "exp_a", source_channel=["GFP"]), config(plates, "exp_c")], training_channels="shared"
    )
    assert registry.active_channels == ["GFP"]
    assert registry.channel_maps == {"exp_a": {0: 1}, "exp_c": {0: 1}}


def test_all_channels_zero_fill_what_an_experiment_lacks(plates):
    registry = ExperimentRegistry([config(plates, "exp_a"), config(plates, "exp_b")], training_channels="all")
    assert registry.active_channels == ["Phase3D", "GFP", "Mito", "RFP"]
    assert registry.num_source_channels == 4
    assert MISSING_CHANNEL == -1
    assert registry.channel_maps == {
        "exp_a": {0: 0, 1: 1, 2: 2, 3: MISSING_CHANNEL},
        "exp_b": {0: 0, 1: MISSING_CHANNEL, 2: MISSING_CHANNEL, 3: 1},
    }
    restricted = ExperimentRegistry(
        [
            config(plates, "exp_a", source_channel=["Phase3D", "GFP"]),
            config(plates, "exp_b", source_channel=["Phase3D", "RFP"]),
        ],
        training_channels="all",
    )
    assert restricted.active_channels == ["Phase3D", "GFP", "RFP"]
    assert restricted.channel_maps == {"exp_a": {0: 0, 1: 1, 2: -1}, "exp_b": {0: 0, 1: -1, 2: 1}}


def test_explicit_channel_list_in_its_order(plates):
    registry = ExperimentRegistry(
        [config(plates, "exp_a"), config(plates, "exp_c")], training_channels=["GFP", "Phase3D"]
    )
    assert registry.active_channels == ["GFP", "Phase3D"]
    assert registry.channel_maps == {"exp_a": {0: 1, 1: 0}, "exp_c": {0: 1, 1: 0}}
    assert registry.num_source_channels == 2


def test_explicit_channel_missing_from_an_experiment(plates):
    with pytest.raises(ValueError, match=r"Experiment 'exp_b' has no channels \['GFP'\].*\['Phase3D', 'RFP'\]"):
        ExperimentRegistry([config(plates, "exp_a"), config(plates, "exp_b")], training_channels=["Phase3D", "GFP"])


@pytest.mark.parametrize(
    ("training_channels", "message"),
    [
        ("union", r"'union' is not one of \['shared', 'all'\]"),
        ([], "non-empty list"),
        (["GFP", "GFP"], "unique"),
    ],
)
def test_invalid_training_channels(plates, training_channels, message):
    with pytest.raises(ValueError, match=message):
        ExperimentRegistry([config(plates, "exp_a")], training_channels=training_channels)


def test_shared_without_a_common_channel(plates):
    experiments = [config(plates, "exp_a", source_channel=["GFP"]), config(plates, "exp_b", source_channel=["RFP"])]
    with pytest.raises(ValueError, match=r"no channel is in every experiment.*'exp_a': \['GFP'\].*'exp_b': \['RFP'\]"):
        ExperimentRegistry(experiments, training_channels="shared")


def test_unknown_source_channel(plates):
    with pytest.raises(ValueError, match=r"Experiment 'exp_a'.*\['Phase3D', 'GFP', 'Mito'\]; not found: \['DAPI'\]"):
        ExperimentRegistry([config(plates, "exp_a", source_channel=["Phase3D", "DAPI"])])


def test_empty_source_channel(plates):
    with pytest.raises(ValueError, match="source_channel"):
        ExperimentRegistry([config(plates, "exp_a", source_channel=[])])


def test_source_channel_count_mismatch(plates):
    experiments = [
        config(plates, "exp_a", source_channel=["Phase3D", "GFP"]),
        config(plates, "exp_b", source_channel=["RFP"]),
    ]
    with pytest.raises(ValueError, match=r"same number of source_channel entries, but found: 'exp_a': 2, 'exp_b': 1"):
        ExperimentRegistry(experiments)


def test_duplicate_names(plates):
    with pytest.raises(ValueError, match=r"Duplicate experiment name 'exp_a'.*\['exp_a', 'exp_a'\]"):
        ExperimentRegistry([config(plates, "exp_a"), config(plates, "exp_a")])


def test_empty_list():
    with pytest.raises(ValueError, match="Empty experiments list"):
        ExperimentRegistry([])


def test_channel_names_must_match_the_zarr(plates):
    with pytest.raises(
        ValueError,
        match=r"'exp_a': channel_names mismatch\. Expected \(from config\): \['Phase3D', 'GFP', 'RFP'\], "
        r"got \(from zarr\): \['Phase3D', 'GFP', 'Mito'\]",
    ):
        ExperimentRegistry([config(plates, "exp_a", channel_names=["Phase3D", "GFP", "RFP"])])


def test_duplicate_channel_names(plates):
    with pytest.raises(ValueError, match="channel_names must be non-empty and unique"):
        ExperimentRegistry([config(plates, "exp_a", channel_names=["Phase3D", "Phase3D"])])


def test_missing_data_path(plates, tmp_path):
    missing = tmp_path / "absent.zarr"
    with pytest.raises(ValueError, match=f"'exp_a': data_path does not exist: {missing}"):
        ExperimentRegistry([config(plates, "exp_a", data_path=str(missing))])


def test_data_path_that_is_not_a_plate(plates, tmp_path):
    with pytest.raises(ValueError, match=f"'exp_a': cannot open {tmp_path} as an HCS OME-Zarr plate"):
        ExperimentRegistry([config(plates, "exp_a", data_path=str(tmp_path))])


def test_missing_tracks_path(plates, tmp_path):
    with pytest.raises(ValueError, match="'exp_a': tracks_path does not exist"):
        ExperimentRegistry([config(plates, "exp_a", tracks_path=str(tmp_path / "absent"))])


@pytest.mark.parametrize("interval", [0.0, -5.0])
def test_interval_must_be_positive(plates, interval):
    with pytest.raises(ValueError, match=f"'exp_a': interval_minutes must be positive, got {interval}"):
        ExperimentRegistry([config(plates, "exp_a", interval_minutes=interval)])


def test_empty_condition_wells(plates):
    with pytest.raises(ValueError, match="'exp_a': condition_wells must not be empty"):
        ExperimentRegistry([config(plates, "exp_a", condition_wells={})])


def test_wells_the_plate_lacks_are_warned_about_not_refused(plates, caplog):
    """Regression: a condition_wells well missing from the plate raised; the reference accepts it."""
    wells = {"uninfected": ["A/1"], "infected": ["B/1", "H/12"], "mock": ["H/11"]}
    with caplog.at_level(logging.WARNING, logger="dynaclr.experiment"):
        registry = ExperimentRegistry([config(plates, "exp_a", condition_wells=wells)])
    assert registry.names == ["exp_a"]
    assert re.search(
        r"Experiment 'exp_a': condition_wells lists wells \['H/12', 'H/11'\] that .*plate\.zarr lacks; they "
        r"contribute no cells\. Its wells: \['A/1', 'B/1'\]",
        caplog.text,
    )


def test_a_well_under_two_conditions(plates):
    with pytest.raises(ValueError, match=r"wells \['A/1'\] appear more than once"):
        ExperimentRegistry([config(plates, "exp_a", condition_wells={"uninfected": ["A/1"], "infected": ["A/1"]})])


def test_mappings_are_converted_to_configs(plates):
    registry = ExperimentRegistry([asdict(config(plates, "exp_a"))])
    assert registry.experiments == [config(plates, "exp_a")]


def _write_yaml(path: Path, experiments: list[ExperimentConfig]) -> Path:
    path.write_text(yaml.safe_dump({"experiments": [asdict(experiment) for experiment in experiments]}))
    return path


def test_from_yaml_round_trip(plates, tmp_path):
    experiments = [
        config(plates, "exp_a", source_channel=["Phase3D", "GFP"], start_hpi=3.0, organelle="er", date="2025-07-22"),
        config(plates, "exp_b", source_channel=["Phase3D", "RFP"], moi=0.5),
    ]
    path = _write_yaml(tmp_path / "experiments.yml", experiments)
    registry = ExperimentRegistry.from_yaml(path)
    assert registry.experiments == experiments
    assert registry.channel_maps == ExperimentRegistry(experiments).channel_maps
    assert ExperimentRegistry.from_yaml(path, training_channels="all").active_channels == ["Phase3D", "GFP", "RFP"]


def test_from_yaml_rejects_unknown_keys(plates, tmp_path):
    entry = {**asdict(config(plates, "exp_a")), "experiments_file": "x"}
    path = tmp_path / "experiments.yml"
    path.write_text(yaml.safe_dump({"experiments": [entry]}))
    with pytest.raises(TypeError, match=r"experiments\[0\] has unknown keys \['experiments_file'\]; valid keys"):
        ExperimentRegistry.from_yaml(path)


def test_from_yaml_missing_field(plates, tmp_path):
    entry = asdict(config(plates, "exp_a"))
    del entry["tracks_path"]
    path = tmp_path / "experiments.yml"
    path.write_text(yaml.safe_dump({"experiments": [entry]}))
    with pytest.raises(TypeError, match=r"experiments\[0\].*tracks_path"):
        ExperimentRegistry.from_yaml(path)


@pytest.mark.parametrize("content", ["- name: a\n", "runs: []\n", "experiments: [a]\n"])
def test_from_yaml_needs_an_experiments_list_of_mappings(tmp_path, content):
    path = tmp_path / "experiments.yml"
    path.write_text(content)
    with pytest.raises(ValueError, match="experiments"):
        ExperimentRegistry.from_yaml(path)


def test_tau_range_frames(plates):
    registry = ExperimentRegistry([config(plates, "exp_a"), config(plates, "exp_b")], training_channels="shared")
    assert registry.tau_range_frames("exp_a", (0.5, 2.0)) == (1, 4)
    assert registry.tau_range_frames("exp_b", (0.5, 2.0)) == (2, 8)
    assert registry.tau_range_frames("exp_a", [0.25, 0.75]) == (0, 2)


@pytest.mark.parametrize(
    ("hours", "warns"), [((0.0, 0.0), True), ((0.0, 0.5), True), ((0.5, 0.5), True), ((0.0, 1.0), False)]
)
def test_tau_range_frames_warns_below_two_valid_frames(plates, caplog, hours, warns):
    registry = ExperimentRegistry([config(plates, "exp_a")])
    with caplog.at_level(logging.WARNING, logger="dynaclr.experiment"):
        registry.tau_range_frames("exp_a", hours)
    assert ("fewer than 2 valid frames" in caplog.text) == warns


def test_tau_range_frames_rejects_reversed_range(plates):
    registry = ExperimentRegistry([config(plates, "exp_a")])
    with pytest.raises(ValueError, match="min <= max"):
        registry.tau_range_frames("exp_a", (2.0, 0.5))


def test_get_experiment(plates):
    registry = ExperimentRegistry([config(plates, "exp_a"), config(plates, "exp_b")], training_channels="shared")
    assert registry.get_experiment("exp_b") == config(plates, "exp_b")
    assert registry.names == ["exp_a", "exp_b"]
    with pytest.raises(KeyError, match=r"Experiment 'exp_z' not found in registry\. Available: \['exp_a', 'exp_b'\]"):
        registry.get_experiment("exp_z")


@pytest.mark.slow
def test_example_experiments_yaml_matches_the_written_examples(tmp_path, monkeypatch):
    """The committed examples/configs/experiments.yml is what write_example_experiments writes, and it validates."""
    monkeypatch.chdir(tmp_path)
    written = write_example_experiments()
    assert written == Path("synthetic/experiments/experiments.yml")
    committed = CONFIGS / "experiments.yml"
    assert yaml.safe_load(committed.read_text()) == yaml.safe_load(written.read_text())
    registry = ExperimentRegistry.from_yaml(committed)
    assert registry.names == [experiment["name"] for experiment in EXAMPLE_EXPERIMENTS]
    assert registry.channel_maps == {
        "2025_07_22_SEC61": {0: 0, 1: 1},
        "2025_08_15_TOMM20": {0: 0, 1: 1},
        "2025_09_03_SEC61": {0: 0, 1: 1},
    }
    assert [registry.tau_range_frames(name, (0.5, 2.0)) for name in registry.names] == [(1, 4), (2, 8), (2, 6)]
    assert ExperimentRegistry.from_yaml(committed, training_channels="all").channel_maps == {
        "2025_07_22_SEC61": {0: 0, 1: 1, 2: -1},
        "2025_08_15_TOMM20": {0: 0, 1: -1, 2: 1},
        "2025_09_03_SEC61": {0: 0, 1: 1, 2: -1},
    }
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_example_experiments()


def test_lightning_cli_parser_builds_a_registry_from_yaml_mappings(plates):
    """MEXP-04: jsonargparse (what LightningCLI uses) turns a config block into a validated registry."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--registry", type=ExperimentRegistry)
    block = {
        "experiments": [asdict(config(plates, "exp_a")), asdict(config(plates, "exp_b"))],
        "training_channels": "all",
    }
    registry = parser.instantiate(parser.parse_object({"registry": block})).registry
    assert isinstance(registry, ExperimentRegistry)
    assert registry.active_channels == ["Phase3D", "GFP", "Mito", "RFP"]
    assert registry.experiments[1] == config(plates, "exp_b")


def test_subset_keeps_the_whole_registry_channels(plates):
    """A subset (e.g. the validation experiments) reads the same model channels as the whole registry."""
    registry = ExperimentRegistry([config(plates, name) for name in PLATES], training_channels="all")
    subset = registry.subset([registry.names[-1]])
    assert subset.names == [registry.names[-1]]
    assert subset.active_channels == registry.active_channels
    assert subset.num_source_channels == registry.num_source_channels
    assert subset.channel_maps == {registry.names[-1]: registry.channel_maps[registry.names[-1]]}
    assert registry.names != subset.names
    with pytest.raises(KeyError, match="not found in registry"):
        registry.subset(["missing"])
