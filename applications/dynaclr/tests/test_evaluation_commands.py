"""The dynaclr evaluation commands, run through the real ``dynaclr`` CLI on synthetic embeddings."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner, Result

from dynaclr.cli import COMMANDS, LIGHTNING_SUBCOMMANDS, dynaclr
from viscy_utils.callbacks.embedding_writer import write_embedding_dataset
from viscy_utils.evaluation.linear_classifier_config import LinearClassifierTrainConfig
from viscy_utils.testing.fixtures import synthetic_plate  # noqa: F401  (self-contained: no conftest needed)

EXAMPLES = Path(__file__).parents[1] / "examples" / "configs"
PIPELINE = "linear-classifier-infection_state-phase"
INDEX = ["fov_name", "id", "track_id", "t", "parent_track_id", "parent_id", "z", "y", "x"]


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(dynaclr, [str(arg) for arg in args])


def write_yaml(path: Path, content: object) -> Path:
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def run_python(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=300, check=False
    )


def table_value(output: str, section: str, row: str) -> float:
    """The value of a row in the markdown table under ``### section``."""
    text = output.split(f"### {section}", 1)[1].split("###", 1)[0]
    match = re.search(rf"^\| {re.escape(row)} \| ([^|]+) \|$", text, flags=re.MULTILINE)
    assert match, f"no {row!r} row under {section!r} in:\n{output}"
    return float(match.group(1))


@pytest.fixture(scope="module")
def annotations(synthetic_plate) -> Path:  # noqa: F811
    return synthetic_plate.annotations_path


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory: pytest.TempPathFactory, annotations: Path) -> Path:
    """An EmbeddingWriter-format store whose features separate infection_state (one-hot + noise)."""
    table = pd.read_csv(annotations)
    rng = np.random.default_rng(0)
    labels = table["infection_state"].to_numpy()
    signal = 2.0 * np.eye(2)[labels] + rng.normal(scale=0.3, size=(len(table), 2))
    features = np.hstack([signal, rng.normal(size=(len(table), 6))]).astype(np.float32)
    path = tmp_path_factory.mktemp("embeddings") / "embeddings.zarr"
    write_embedding_dataset(path, features, table[INDEX], projections=features[:, :4])
    return path


@pytest.fixture
def store(tmp_path: Path, embeddings: Path) -> Path:
    """A private copy of the embedding store, free to be written into."""
    return Path(shutil.copytree(embeddings, tmp_path / "embeddings.zarr"))


def train_config(tmp_path: Path, embeddings: Path, annotations: Path, **changes: object) -> Path:
    config = {
        "task": "infection_state",
        "input_channel": "phase",
        "embedding_model": "synthetic",
        "train_datasets": [{"embeddings": str(embeddings), "annotations": str(annotations)}],
        "output_dir": str(tmp_path / "pipelines"),
        **changes,
    }
    return write_yaml(tmp_path / "train.yml", config)


def test_help_lists_every_command_without_importing_torch() -> None:
    result = run_python(
        "import sys\nfrom dynaclr.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch imported:', 'torch' in sys.modules)"
    )
    assert result.returncode == 0, result.stderr
    for name in [*LIGHTNING_SUBCOMMANDS, *COMMANDS]:
        assert re.search(rf"^\s+{name}\s", result.stdout, flags=re.MULTILINE), f"{name} missing:\n{result.stdout}"
    assert "torch imported: False" in result.stdout


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_evaluation_command_shows_its_own_options(name: str) -> None:
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.output
    assert f"Usage: dynaclr {name}" in result.output
    assert "--overwrite" in result.output or "--config" in result.output


@pytest.mark.parametrize("name", [name for name, spec in COMMANDS.items() if "linear_classifiers" in spec.import_path])
def test_missing_optional_dependency_names_the_extra(name: str) -> None:
    # `python -m dynaclr.cli NAME --help` with scikit-learn made unimportable; the same command
    # without the first line runs in test_train_in_a_subprocess.
    hide_sklearn = (
        "import runpy, sys\nsys.modules['sklearn'] = None\nrunpy.run_module('dynaclr.cli', run_name='__main__')"
    )
    result = run_python(hide_sklearn, name, "--help")
    assert result.returncode == 1
    assert "pip install 'dynaclr[eval]'" in result.stderr
    assert "'sklearn'" in result.stderr
    assert "Traceback" not in result.stderr


def test_train_prints_metrics_and_saves_the_pipeline(tmp_path: Path, embeddings: Path, annotations: Path) -> None:
    result = invoke("train-linear-classifier", "-c", train_config(tmp_path, embeddings, annotations))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Training {PIPELINE} on 1 dataset(s)")
    assert "## Classification Metrics" in result.output
    assert table_value(result.output, "Validation", "Accuracy") > 0.9
    assert table_value(result.output, "Training", "Accuracy") > 0.9
    assert "Train Accuracy" not in result.output
    assert "Val Accuracy" not in result.output
    assert f"Saved pipeline {PIPELINE!r} to {tmp_path / 'pipelines'}" in result.output
    saved = {path.name for path in (tmp_path / "pipelines").iterdir()}
    assert saved == {f"{PIPELINE}.joblib", f"{PIPELINE}_config.json", f"{PIPELINE}_scaler.joblib"}


def test_train_without_validation_split_says_so(tmp_path: Path, embeddings: Path, annotations: Path) -> None:
    config = train_config(tmp_path, embeddings, annotations, split_train_data=1.0)
    result = invoke("train-linear-classifier", "-c", config)
    assert result.exit_code == 0, result.output
    assert "No validation split (split_train_data: 1.0)." in result.output
    assert table_value(result.output, "Training", "Accuracy") > 0.9


def test_train_refuses_to_replace_a_saved_pipeline(tmp_path: Path, embeddings: Path, annotations: Path) -> None:
    config = train_config(tmp_path, embeddings, annotations)
    assert invoke("train-linear-classifier", "-c", config).exit_code == 0
    saved = (tmp_path / "pipelines" / f"{PIPELINE}.joblib").read_bytes()
    result = invoke("train-linear-classifier", "-c", config)
    assert result.exit_code == 1
    assert "already saved" in result.output
    assert "overwrite: true" in result.output
    assert "Training" not in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "pipelines" / f"{PIPELINE}.joblib").read_bytes() == saved


@pytest.mark.parametrize(
    ("changes", "field", "detail"),
    [
        ({"task": "mitosis"}, "task", "infection_state"),
        ({"split_train_data": 1.5}, "split_train_data", "less than or equal to 1"),
        ({"typo_field": 1}, "typo_field", "Extra inputs are not permitted"),
        ({"train_datasets": [{"embeddings": "missing.zarr", "annotations": "a.csv"}]}, "<config>", "missing.zarr"),
    ],
)
def test_bad_train_config_gives_a_short_message(
    tmp_path: Path, embeddings: Path, annotations: Path, changes: dict, field: str, detail: str
) -> None:
    result = invoke("train-linear-classifier", "-c", train_config(tmp_path, embeddings, annotations, **changes))
    assert result.exit_code == 1
    assert result.output.startswith("Error: Invalid LinearClassifierTrainConfig in")
    assert f"  {field}: " in result.output
    assert detail in result.output
    assert "Traceback" not in result.output
    assert len(result.output.splitlines()) <= 4
    assert not (tmp_path / "pipelines").exists()


def test_config_that_is_not_yaml_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "broken.yml"
    config.write_text("task: [infection_state\n")
    result = invoke("train-linear-classifier", "-c", config)
    assert result.exit_code == 1
    assert "is not valid YAML" in result.output
    assert "Traceback" not in result.output


def test_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("apply-linear-classifier", "-c", tmp_path / "absent.yml")
    assert result.exit_code == 2
    assert "does not exist" in result.output


@pytest.fixture
def pipeline_dir(tmp_path: Path, embeddings: Path, annotations: Path) -> Path:
    assert invoke("train-linear-classifier", "-c", train_config(tmp_path, embeddings, annotations)).exit_code == 0
    return tmp_path / "pipelines"


def test_apply_writes_predictions_to_a_new_store(
    tmp_path: Path, store: Path, pipeline_dir: Path, annotations: Path
) -> None:
    output = tmp_path / "predicted.zarr"
    config = {"pipeline_dir": str(pipeline_dir), "embeddings_path": str(store), "output_path": str(output)}
    result = invoke("apply-linear-classifier", "-c", write_yaml(tmp_path / "apply.yml", config))
    assert result.exit_code == 0, result.output
    predicted = anndata.read_zarr(output)
    truth = pd.read_csv(annotations)["infection_state"].astype(str).to_numpy()
    assert (predicted.obs["predicted_infection_state"].to_numpy() == truth).mean() > 0.9
    assert predicted.obsm["predicted_infection_state_proba"].shape == (predicted.n_obs, 2)
    assert list(predicted.uns["predicted_infection_state_classes"]) == ["0", "1"]
    assert "predicted_infection_state" not in anndata.read_zarr(store).obs
    counts = pd.Series(predicted.obs["predicted_infection_state"]).value_counts()
    for label, count in counts.items():
        assert f"| {label} | {count} |" in result.output
    assert f"| Shape | ({predicted.n_obs}, 2) |" in result.output
    assert "| Classes | 0, 1 |" in result.output
    assert f"| Pipeline | {pipeline_dir} |" in result.output
    assert f"| Written To | {output} |" in result.output


def test_apply_predicts_only_the_included_wells(tmp_path: Path, store: Path, pipeline_dir: Path) -> None:
    output = tmp_path / "predicted.zarr"
    config = {
        "pipeline_dir": str(pipeline_dir),
        "model_name": PIPELINE,
        "embeddings_path": str(store),
        "output_path": str(output),
        "include_wells": ["A/2"],
    }
    result = invoke("apply-linear-classifier", "-c", write_yaml(tmp_path / "apply.yml", config))
    assert result.exit_code == 0, result.output
    obs = anndata.read_zarr(output).obs
    in_well = obs["fov_name"].astype(str).str.startswith("A/2/").to_numpy()
    assert obs["predicted_infection_state"][in_well].notna().all()
    assert obs["predicted_infection_state"][~in_well].isna().all()
    assert f"| <not predicted: other wells> | {int((~in_well).sum())} |" in result.output
    assert f"| Pipeline | {pipeline_dir} ({PIPELINE}) |" in result.output


def test_apply_refuses_to_write_in_place_without_overwrite(tmp_path: Path, store: Path, pipeline_dir: Path) -> None:
    config = {"pipeline_dir": str(pipeline_dir), "embeddings_path": str(store)}
    result = invoke("apply-linear-classifier", "-c", write_yaml(tmp_path / "apply.yml", config))
    assert result.exit_code == 1
    assert "overwrite" in result.output
    assert "Traceback" not in result.output
    assert "predicted_infection_state" not in anndata.read_zarr(store).obs

    config["overwrite"] = True
    result = invoke("apply-linear-classifier", "-c", write_yaml(tmp_path / "apply.yml", config))
    assert result.exit_code == 0, result.output
    assert "predicted_infection_state" in anndata.read_zarr(store).obs


def test_apply_refuses_an_existing_output_without_overwrite(tmp_path: Path, store: Path, pipeline_dir: Path) -> None:
    output = tmp_path / "predicted.zarr"
    output.mkdir()
    (output / "user_file").write_text("keep me")
    config = {"pipeline_dir": str(pipeline_dir), "embeddings_path": str(store), "output_path": str(output)}
    result = invoke("apply-linear-classifier", "-c", write_yaml(tmp_path / "apply.yml", config))
    assert result.exit_code == 1
    assert "output_path" in result.output
    assert "overwrite: true" in result.output
    assert (output / "user_file").read_text() == "keep me"


def test_apply_with_an_unknown_pipeline_lists_the_pipelines_present(
    tmp_path: Path, store: Path, pipeline_dir: Path
) -> None:
    config = {
        "pipeline_dir": str(pipeline_dir),
        "model_name": "linear-classifier-cell_death_state-phase",
        "embeddings_path": str(store),
        "output_path": str(tmp_path / "predicted.zarr"),
    }
    result = invoke("apply-linear-classifier", "-c", write_yaml(tmp_path / "apply.yml", config))
    assert result.exit_code == 1
    assert PIPELINE in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "predicted.zarr").exists()


def test_example_configs_run_in_the_walkthrough_folder(
    tmp_path: Path, embeddings: Path, annotations: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    train = yaml.safe_load((EXAMPLES / "linear_classifier_train.yml").read_text())
    apply = yaml.safe_load((EXAMPLES / "linear_classifier_apply.yml").read_text())
    assert train["task"] == "infection_state"
    assert train["wandb_project"] is None
    shutil.copytree(embeddings, train["train_datasets"][0]["embeddings"])
    Path(train["train_datasets"][0]["annotations"]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(annotations, train["train_datasets"][0]["annotations"])

    result = invoke("train-linear-classifier", "-c", EXAMPLES / "linear_classifier_train.yml")
    assert result.exit_code == 0, result.output
    assert (Path(train["output_dir"]) / f"{apply['model_name']}.joblib").is_file()
    result = invoke("apply-linear-classifier", "-c", EXAMPLES / "linear_classifier_apply.yml")
    assert result.exit_code == 0, result.output
    assert "predicted_infection_state" in anndata.read_zarr(apply["output_path"]).obs
    assert "predicted_infection_state" not in anndata.read_zarr(apply["embeddings_path"]).obs


@pytest.mark.slow
def test_train_in_a_subprocess(tmp_path: Path, embeddings: Path, annotations: Path) -> None:
    config = train_config(tmp_path, embeddings, annotations)
    result = subprocess.run(
        [sys.executable, "-m", "dynaclr.cli", "train-linear-classifier", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert table_value(result.stdout, "Validation", "Accuracy") > 0.9
    assert (tmp_path / "pipelines" / f"{PIPELINE}.joblib").is_file()


# -- discover-datasets and generate-train-config ---------------------------------------------------


@pytest.fixture
def predictions_layout(tmp_path: Path, embeddings: Path, annotations: Path) -> tuple[Path, Path]:
    """Predictions and annotations roots with matched, unmatched and non-AnnData entries.

    - ``ds_a/v1/embeddings_phase.zarr`` with ``annotations/ds_a/tracks_annotations.csv``
    - ``ds_b/embeddings_sensor.zarr`` with ``annotations/ds_b.csv`` (one infection class only)
    - ``ds_b/run2/embeddings.zarr`` (no channel in its name) with the same annotations
    - ``ds_c.zarr`` in the root, without annotations
    - ``ds_a/plate.zarr``, an OME-Zarr plate (not embeddings)
    - ``annotations/ds_d/labels.csv`` without embeddings
    """
    predictions, annotation_root = tmp_path / "predictions", tmp_path / "annotations"
    for relative in ("ds_a/v1/embeddings_phase.zarr", "ds_b/embeddings_sensor.zarr", "ds_b/run2/embeddings.zarr"):
        shutil.copytree(embeddings, predictions / relative)
    shutil.copytree(embeddings, predictions / "ds_c.zarr")
    (predictions / "ds_a" / "plate.zarr").mkdir()
    (predictions / "ds_a" / "plate.zarr" / ".zattrs").write_text('{"plate": {"version": "0.4"}}')
    (annotation_root / "ds_a").mkdir(parents=True)
    shutil.copy(annotations, annotation_root / "ds_a" / "tracks_annotations.csv")
    table = pd.read_csv(annotations).assign(infection_state=0).drop(columns="cell_division_state")
    table.to_csv(annotation_root / "ds_b.csv", index=False)
    (annotation_root / "ds_d").mkdir()
    shutil.copy(annotations, annotation_root / "ds_d" / "labels.csv")
    return predictions, annotation_root


def test_discover_datasets_writes_a_registry_of_matched_stores(
    tmp_path: Path, predictions_layout: tuple[Path, Path]
) -> None:
    predictions, annotation_root = predictions_layout
    registry = tmp_path / "registry.yml"
    result = invoke(
        "discover-datasets", "--predictions-root", predictions, "--annotations-root", annotation_root, "-o", registry
    )
    assert result.exit_code == 0, result.output
    entries = yaml.safe_load(registry.read_text())
    assert entries == [
        {
            "name": "ds_a/v1/embeddings_phase",
            "embeddings": str(predictions / "ds_a/v1/embeddings_phase.zarr"),
            "annotations": str(annotation_root / "ds_a/tracks_annotations.csv"),
            "input_channel": "phase",
        },
        {
            "name": "ds_b/embeddings_sensor",
            "embeddings": str(predictions / "ds_b/embeddings_sensor.zarr"),
            "annotations": str(annotation_root / "ds_b.csv"),
            "input_channel": "sensor",
        },
        {
            "name": "ds_b/run2/embeddings",
            "embeddings": str(predictions / "ds_b/run2/embeddings.zarr"),
            "annotations": str(annotation_root / "ds_b.csv"),
        },
    ]
    LinearClassifierTrainConfig(
        task="infection_state",
        input_channel="phase",
        embedding_model="synthetic",
        train_datasets=entries,
        output_dir=tmp_path,
    )
    row = "| ds_a/v1/embeddings_phase | phase | tracks_annotations.csv | infection_state (2), cell_division_state (2) |"
    assert row in result.output
    assert "| ds_b/embeddings_sensor | sensor | ds_b.csv | infection_state (1) |" in result.output
    assert "| ds_c | no ds_c.csv or ds_c/*.csv |" in result.output
    assert "- ds_d" in result.output
    assert "Skipped 1 zarr store(s) that are not AnnData embeddings." in result.output
    assert f"Wrote 3 dataset(s) to {registry}" in result.output


def test_discover_datasets_refuses_ambiguous_annotations(tmp_path: Path, predictions_layout: tuple[Path, Path]) -> None:
    predictions, annotation_root = predictions_layout
    shutil.copy(annotation_root / "ds_a" / "tracks_annotations.csv", annotation_root / "ds_a" / "other.csv")
    registry = tmp_path / "registry.yml"
    result = invoke(
        "discover-datasets", "--predictions-root", predictions, "--annotations-root", annotation_root, "-o", registry
    )
    assert result.exit_code == 0, result.output
    assert "| ds_a/v1/embeddings_phase | several annotation CSVs: other.csv, tracks_annotations.csv |" in result.output
    assert [entry["name"] for entry in yaml.safe_load(registry.read_text())] == [
        "ds_b/embeddings_sensor",
        "ds_b/run2/embeddings",
    ]


def test_discover_datasets_refuses_to_overwrite(tmp_path: Path, predictions_layout: tuple[Path, Path]) -> None:
    predictions, annotation_root = predictions_layout
    registry = tmp_path / "registry.yml"
    registry.write_text("# my registry\n")
    args = ["discover-datasets", "--predictions-root", predictions, "--annotations-root", annotation_root]
    result = invoke(*args, "-o", registry)
    assert result.exit_code == 1
    assert "Refusing to overwrite" in result.output
    assert "--overwrite" in result.output
    assert registry.read_text() == "# my registry\n"
    result = invoke(*args, "-o", registry, "--overwrite")
    assert result.exit_code == 0, result.output
    assert len(yaml.safe_load(registry.read_text())) == 3


def test_discover_datasets_without_any_match_writes_nothing(tmp_path: Path, embeddings: Path) -> None:
    shutil.copytree(embeddings, tmp_path / "predictions" / "ds_x" / "embeddings.zarr")
    (tmp_path / "annotations").mkdir()
    registry = tmp_path / "registry.yml"
    result = invoke(
        "discover-datasets",
        "--predictions-root",
        tmp_path / "predictions",
        "--annotations-root",
        tmp_path / "annotations",
        "-o",
        registry,
    )
    assert result.exit_code == 1
    assert "nothing written" in result.output
    assert not registry.exists()


@pytest.fixture
def registry(tmp_path: Path, predictions_layout: tuple[Path, Path]) -> Path:
    predictions, annotation_root = predictions_layout
    path = tmp_path / "registry.yml"
    args = ["--predictions-root", predictions, "--annotations-root", annotation_root, "-o", path]
    assert invoke("discover-datasets", *args).exit_code == 0
    return path


def test_generate_train_config_writes_one_valid_config_per_task_and_channel(tmp_path: Path, registry: Path) -> None:
    output = tmp_path / "configs"
    result = invoke("generate-train-config", "-r", registry, "-o", output, "--embedding-model", "DynaCLR-test")
    assert result.exit_code == 0, result.output
    written = sorted(path.name for path in output.iterdir())
    assert written == ["cell_division_state_phase.yml", "infection_state_phase.yml"]
    entries = yaml.safe_load(registry.read_text())
    for task in ("infection_state", "cell_division_state"):
        text = (output / f"{task}_phase.yml").read_text()
        assert text.startswith(f"# Written by `dynaclr generate-train-config` from {registry}")
        config = LinearClassifierTrainConfig.model_validate(yaml.safe_load(text))
        assert (config.task, config.input_channel, config.embedding_model) == (task, "phase", "DynaCLR-test")
        assert config.train_datasets == [{key: entries[0][key] for key in ("name", "embeddings", "annotations")}]
        assert config.output_dir == output / "pipelines"
        assert config.wandb_project is None
    assert "| infection_state | sensor | 1 | 0 | skipped: fewer than 2 classes in every dataset |" in result.output
    assert "Skipped 1 dataset(s) without input_channel in the registry" in result.output
    assert "ds_b/run2/embeddings" in result.output


def test_generated_train_config_trains(tmp_path: Path, registry: Path) -> None:
    output = tmp_path / "configs"
    assert invoke("generate-train-config", "-r", registry, "-o", output, "--embedding-model", "m").exit_code == 0
    result = invoke("train-linear-classifier", "-c", output / "infection_state_phase.yml")
    assert result.exit_code == 0, result.output
    assert table_value(result.output, "Validation", "Accuracy") > 0.9
    assert (output / "pipelines" / f"{PIPELINE}.joblib").is_file()


def test_generate_train_config_refuses_to_overwrite(tmp_path: Path, registry: Path) -> None:
    output = tmp_path / "configs"
    output.mkdir()
    mine = output / "infection_state_phase.yml"
    mine.write_text("# hand-tuned\n")
    args = ["generate-train-config", "-r", registry, "-o", output, "--embedding-model", "m"]
    result = invoke(*args)
    assert result.exit_code == 1
    assert "Refusing to overwrite" in result.output
    assert str(mine) in result.output
    assert mine.read_text() == "# hand-tuned\n"
    assert not (output / "cell_division_state_phase.yml").exists()
    result = invoke(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    assert LinearClassifierTrainConfig.model_validate(yaml.safe_load(mine.read_text())).task == "infection_state"


def test_generate_train_config_without_a_valid_combination_writes_nothing(tmp_path: Path, registry: Path) -> None:
    entries = [entry for entry in yaml.safe_load(registry.read_text()) if entry.get("input_channel") == "sensor"]
    sensor_only = write_yaml(tmp_path / "sensor_only.yml", entries)
    output = tmp_path / "configs"
    result = invoke("generate-train-config", "-r", sensor_only, "-o", output, "--embedding-model", "m")
    assert result.exit_code == 1
    assert "No valid (task, input_channel) combination" in result.output
    assert not output.exists()


def test_generate_train_config_rejects_a_file_that_is_not_a_registry(tmp_path: Path) -> None:
    bad = write_yaml(tmp_path / "bad.yml", [{"embeddings": "x.zarr"}])
    result = invoke("generate-train-config", "-r", bad, "-o", tmp_path / "out", "--embedding-model", "m")
    assert result.exit_code == 1
    assert "entry 0 needs 'embeddings' and 'annotations'" in result.output
