"""The scripts of applications/dynaclr/examples, run for real on synthetic plates.

The examples are scripts, not a package: each is loaded from its path (``_load_example``) and
run through its ``main(argv)``, or as a whole with :mod:`runpy` (the quickstart notebook).
"""

from __future__ import annotations

import base64
import importlib.util
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from dynaclr.experiment import ExperimentRegistry
from viscy_data.ome_compat import fov_name, open_ome_zarr
from viscy_data.synthetic import DEFAULT_WELL_CONDITIONS, TRACK_COLUMNS

from .conftest import CONFIGS, EXAMPLES

REPO_ROOT = EXAMPLES.parents[2]
INDEX_COLUMNS = ["fov_name", "track_id", "t", "id", "parent_track_id", "parent_id", "z", "y", "x"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load_example(relative_path: str) -> ModuleType:
    """Import an example script from its path under ``examples/``."""
    path = EXAMPLES / relative_path
    spec = importlib.util.spec_from_file_location(f"dynaclr_example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _well(fov_names: pd.Series) -> pd.Series:
    return fov_names.str.split("/").str[:2].str.join("/")


# --------------------------------------------------------------------------------------------
# make_synthetic_data.py


@pytest.fixture(scope="module")
def walkthrough_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's first command, run without arguments in a fresh directory: writes ``synthetic/``."""
    root = tmp_path_factory.mktemp("walkthrough")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert _load_example("make_synthetic_data.py").main([]) == 0
    return root


def test_make_synthetic_data_writes_the_plate_the_configs_read(walkthrough_dir, example_plate_dir):
    synthetic = walkthrough_dir / "synthetic"
    fit = yaml.safe_load((CONFIGS / "fit.yml").read_text())["data"]["init_args"]
    predict = yaml.safe_load((CONFIGS / "predict.yml").read_text())["data"]["init_args"]
    for config in (fit, predict):
        assert (walkthrough_dir / config["data_path"]).resolve() == (synthetic / "plate.zarr").resolve()
        assert (walkthrough_dir / config["tracks_path"]).resolve() == (synthetic / "tracks").resolve()
        assert config["source_channel"] == ["Phase3D", "RFP"]
    with open_ome_zarr(synthetic / "plate.zarr", layout="hcs", mode="r") as plate:
        assert list(plate.channel_names) == ["Phase3D", "RFP"]
        names = [fov_name(position) for _, position in plate.positions()]
        assert names == [f"{well}/{fov}" for well in DEFAULT_WELL_CONDITIONS for fov in (0, 1)]
        first = plate[names[0]]
        assert first["0"].shape == (8, 2, 5, 192, 192)
        assert set(first.zattrs["normalization"]) == {"Phase3D", "RFP"}
        written = np.asarray(first["0"][3])
    for name in names:
        tracks = pd.read_csv(synthetic / "tracks" / name / "tracks.csv")
        assert list(tracks.columns) == list(TRACK_COLUMNS)
    annotations = pd.read_csv(synthetic / "annotations.csv")
    infected_wells = {well for well, condition in DEFAULT_WELL_CONDITIONS.items() if condition == "infected"}
    in_infected_well = _well(annotations["fov_name"]).isin(infected_wells)
    assert annotations.loc[~in_infected_well, "infection_state"].eq(0).all()
    assert annotations.loc[in_infected_well, "infection_state"].eq(1).any()
    # the very plate of dynaclr.example_data, which the training and inference tests use
    reference = example_plate_dir / "synthetic"
    pd.testing.assert_frame_equal(annotations, pd.read_csv(reference / "annotations.csv"))
    with open_ome_zarr(reference / "plate.zarr", layout="hcs", mode="r") as plate:
        np.testing.assert_array_equal(written, np.asarray(plate[names[0]]["0"][3]))


def test_make_synthetic_data_refuses_to_overwrite(walkthrough_dir, capsys):
    annotations = walkthrough_dir / "synthetic" / "annotations.csv"
    before = (annotations.stat().st_mtime_ns, annotations.read_bytes())
    make = _load_example("make_synthetic_data.py")
    assert make.main(["--output-dir", str(walkthrough_dir / "synthetic"), "--seed", "1"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (annotations.stat().st_mtime_ns, annotations.read_bytes()) == before
    assert vars(make.parse_args([])) == {"output_dir": Path("synthetic"), "seed": 0, "overwrite": False}


# --------------------------------------------------------------------------------------------
# make_synthetic_experiments.py


@pytest.mark.slow
def test_make_synthetic_experiments_writes_what_experiments_yml_lists(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make = _load_example("make_synthetic_experiments.py")
    assert make.main([]) == 0
    out = capsys.readouterr().out
    assert "2025_08_15_TOMM20: channels [Phase3D, RFP], 15 min/frame" in out
    committed = ExperimentRegistry.from_yaml(CONFIGS / "experiments.yml")
    written = yaml.safe_load((tmp_path / "synthetic" / "experiments" / "experiments.yml").read_text())
    assert written == yaml.safe_load((CONFIGS / "experiments.yml").read_text())
    assert committed.names == [entry["name"] for entry in written["experiments"]]
    before = (tmp_path / "synthetic" / "experiments" / "experiments.yml").read_bytes()
    assert make.main(["--seed", "1"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "synthetic" / "experiments" / "experiments.yml").read_bytes() == before


# --------------------------------------------------------------------------------------------
# fit_slurm.sh, predict_slurm.sh

SLURM_SCRIPTS = ["fit_slurm.sh", "predict_slurm.sh"]


def _sbatch_directives(script: Path) -> dict[str, str]:
    """``#SBATCH --key=value`` lines (inline comments dropped), as sbatch reads them."""
    directives = {}
    for line in script.read_text().splitlines():
        if line.startswith("#SBATCH "):
            option = line.removeprefix("#SBATCH ").split("#")[0].strip()
            key, _, value = option.partition("=")
            directives[key] = value
    return directives


@pytest.mark.parametrize("name", SLURM_SCRIPTS)
def test_slurm_script_is_valid_bash(name):
    result = subprocess.run(["bash", "-n", str(EXAMPLES / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", SLURM_SCRIPTS)
def test_sbatch_directives_give_one_task_per_gpu(name):
    script = EXAMPLES / name
    directives = _sbatch_directives(script)
    gpus = re.fullmatch(r"gpu:(\d+)", directives["--gres"])
    assert gpus is not None, directives["--gres"]
    assert int(directives["--ntasks-per-node"]) == int(gpus.group(1))
    assert int(directives["--nodes"]) >= 1
    assert int(directives["--cpus-per-task"]) >= 1
    assert re.fullmatch(r"\d+:\d\d:\d\d", directives["--time"])
    if name == "fit_slurm.sh":
        assert "--requeue" in directives
        assert directives["--signal"] == "SIGUSR1@90"
    # sbatch stops reading directives at the first command
    lines = script.read_text().splitlines()
    first_command = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    assert max(i for i, line in enumerate(lines) if line.startswith("#SBATCH ")) < first_command


@pytest.fixture
def fake_slurm(tmp_path: Path):
    """Run a SLURM script with ``srun`` and ``uv`` stubs on PATH; return the argv ``uv`` got, or None."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun_log, uv_log = tmp_path / "srun.argv", tmp_path / "uv.argv"
    (bin_dir / "srun").write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > "{srun_log}"\nexec "$@"\n')
    (bin_dir / "uv").write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > "{uv_log}"\n')
    for stub in ("srun", "uv"):
        (bin_dir / stub).chmod(0o755)

    def run(name: str, nodes: int = 1, tasks_per_node: int = 4, gpus_on_node: int | None = None, **env: str):
        environment = {
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "SLURM_JOB_NAME": "dynaclr_fit",
            "SLURM_JOB_ID": "4242",
            "SLURM_NNODES": str(nodes),
            "SLURM_NTASKS_PER_NODE": str(tasks_per_node),
            "SLURM_GPUS_ON_NODE": str(tasks_per_node if gpus_on_node is None else gpus_on_node),
            "SLURM_SUBMIT_DIR": str(tmp_path),
            **env,
        }
        result = subprocess.run(
            ["bash", str(EXAMPLES / name)], cwd=tmp_path, env=environment, capture_output=True, text=True
        )
        if not uv_log.exists():
            return result, None
        assert srun_log.read_text().splitlines()[:3] == ["uv", "run", "--frozen"], "uv must run under srun"
        return result, uv_log.read_text().splitlines()

    return run


def test_fit_slurm_runs_dynaclr_fit_on_the_allocation(fake_slurm, tmp_path):
    result, argv = fake_slurm("fit_slurm.sh", nodes=2, tasks_per_node=4)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "slurm_runs" / "dynaclr_fit" / "4242"
    assert argv == [
        "run",
        "--frozen",
        "dynaclr",
        "fit",
        "-c",
        "applications/dynaclr/examples/configs/fit.yml",
        "--trainer.devices",
        "4",
        "--trainer.num_nodes",
        "2",
        "--trainer.default_root_dir",
        str(run_dir),
    ]
    assert (REPO_ROOT / argv[5]).is_file()
    assert run_dir.is_dir()
    _, argv = fake_slurm("fit_slurm.sh", CONFIG="my_fit.yml", RUNS_DIR=str(tmp_path / "runs"))
    assert argv[5] == "my_fit.yml"
    assert argv[-1] == str(tmp_path / "runs" / "dynaclr_fit" / "4242")


def test_fit_slurm_resumes_a_requeued_job_from_its_hpc_checkpoint(fake_slurm, tmp_path):
    run_dir = tmp_path / "slurm_runs" / "dynaclr_fit" / "4242"
    run_dir.mkdir(parents=True)
    (run_dir / "hpc_ckpt_1.ckpt").write_bytes(b"")
    result, argv = fake_slurm("fit_slurm.sh")
    assert result.returncode == 0, result.stderr
    assert argv[-4:] == ["--trainer.default_root_dir", str(run_dir), "--ckpt_path", "hpc"]
    assert "Resuming" in result.stdout


def test_fit_slurm_resumes_a_job_requeued_without_hpc_checkpoint_from_last(fake_slurm, tmp_path):
    run_dir = tmp_path / "slurm_runs" / "dynaclr_fit" / "4242"
    result, argv = fake_slurm("fit_slurm.sh", SLURM_RESTART_COUNT="1")
    assert result.returncode == 0, result.stderr
    assert argv[-4:] == ["--trainer.default_root_dir", str(run_dir), "--ckpt_path", "last"]
    assert "restart 1" in result.stdout
    _, argv = fake_slurm("fit_slurm.sh", SLURM_RESTART_COUNT="0")  # the first run starts afresh
    assert argv[-1] == str(run_dir)


def test_fit_slurm_refuses_more_gpus_than_tasks(fake_slurm):
    result, argv = fake_slurm("fit_slurm.sh", tasks_per_node=2, gpus_on_node=4)
    assert result.returncode == 1
    assert argv is None
    assert "--ntasks-per-node" in result.stderr


def test_predict_slurm_runs_dynaclr_predict(fake_slurm):
    result, argv = fake_slurm("predict_slurm.sh", tasks_per_node=1)
    assert result.returncode == 0, result.stderr
    assert argv == [
        "run",
        "--frozen",
        "dynaclr",
        "predict",
        "-c",
        "applications/dynaclr/examples/configs/predict.yml",
        "--trainer.devices",
        "1",
        "--trainer.num_nodes",
        "1",
    ]
    assert (REPO_ROOT / argv[5]).is_file()
    _, argv = fake_slurm("predict_slurm.sh", tasks_per_node=1, CKPT_PATH="/ckpts/last.ckpt")
    assert argv[-2:] == ["--ckpt_path", "/ckpts/last.ckpt"]


def test_fit_slurm_arguments_resume_lightning_from_the_hpc_checkpoint(fake_slurm, tmp_path):
    """The script's arguments, run by the real Lightning CLI, resume where Lightning's SIGUSR1 handler saved."""
    from viscy_utils.cli import run_cli

    config = tmp_path / "tiny_fit.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "trainer": {"accelerator": "cpu", "max_epochs": 1, "logger": False, "enable_checkpointing": False},
                "model": {"class_path": "viscy_utils.testing.TinyRegressor"},
                "data": {
                    "class_path": "viscy_utils.testing.RandomPairsDataModule",
                    "init_args": {"length": 8, "batch_size": 4},
                },
            }
        )
    )
    _, argv = fake_slurm("fit_slurm.sh", tasks_per_node=1, CONFIG=str(config))
    first = run_cli(argv[3:])
    assert first.trainer.global_step == 2
    run_dir = Path(argv[argv.index("--trainer.default_root_dir") + 1])
    # what Lightning's SLURM SIGUSR1 handler does before `scontrol requeue`
    hpc_path = first.trainer._checkpoint_connector.hpc_save_path(first.trainer.default_root_dir)
    first.trainer.save_checkpoint(hpc_path)
    assert Path(hpc_path) == run_dir / "hpc_ckpt_1.ckpt"

    _, argv = fake_slurm("fit_slurm.sh", tasks_per_node=1, CONFIG=str(config))
    assert argv[-2:] == ["--ckpt_path", "hpc"]
    # the requeued run: one more epoch, of 4 batches (a fresh start would make 2 x 4 steps)
    resumed = run_cli([*argv[3:], "--trainer.max_epochs", "2", "--data.init_args.length", "16"])
    assert resumed.trainer.ckpt_path == hpc_path
    assert resumed.trainer.current_epoch == 2
    assert resumed.trainer.global_step == 2 + 4


# --------------------------------------------------------------------------------------------
# data_preparation/classical_sampling/create_pseudo_tracks.py

PSEUDO_TRACKS = "data_preparation/classical_sampling/create_pseudo_tracks.py"


@pytest.fixture(scope="module")
def label_plate(example_plate_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A one-channel label plate: Otsu threshold + connected components of the middle Phase3D slice."""
    from skimage.filters import threshold_otsu
    from skimage.measure import label

    path = tmp_path_factory.mktemp("labels") / "labels.zarr"
    labels = {}
    source = example_plate_dir / "synthetic" / "plate.zarr"
    with (
        open_ome_zarr(source, layout="hcs", mode="r") as plate,
        open_ome_zarr(path, layout="hcs", mode="w-", channel_names=["nuclei_labels"]) as target,
    ):
        for _, position in plate.positions():
            name = fov_name(position)
            image = position["0"]
            phase = np.asarray(image[:, 0, image.shape[2] // 2])
            stack = np.stack([label(frame > threshold_otsu(frame)) for frame in phase]).astype(np.uint16)
            labels[name] = stack
            target.create_position(*name.split("/")).create_image("0", stack[:, None, None])
    return path, labels


def _centroids(frame: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean row and column of each label's pixels."""
    rows, columns = np.indices(frame.shape)
    counts = np.bincount(frame.ravel())
    y = np.bincount(frame.ravel(), weights=rows.ravel()) / np.maximum(counts, 1)
    x = np.bincount(frame.ravel(), weights=columns.ravel()) / np.maximum(counts, 1)
    return y[labels], x[labels]


def test_create_pseudo_tracks_writes_one_row_per_label_per_frame(label_plate, tmp_path, capsys):
    plate_path, labels = label_plate
    script = _load_example(PSEUDO_TRACKS)
    root = tmp_path / "pseudo_tracks"
    assert script.main([str(plate_path), "--tracks-root", str(root), "--label-channel", "nuclei_labels"]) == 0
    n_rows = 0
    for name, stack in labels.items():
        row, column, fov = name.split("/")
        table = pd.read_csv(root / row / column / fov / f"{row}_{column}_{fov}_tracks.csv")
        assert list(table.columns) == list(TRACK_COLUMNS)
        assert sorted(table["t"].unique()) == list(range(len(stack)))
        for t, frame in enumerate(stack):
            rows = table[table["t"] == t]
            present = np.unique(frame)
            present = present[present > 0]
            np.testing.assert_array_equal(rows["track_id"], present)
            y, x = _centroids(frame, present)
            np.testing.assert_allclose(rows["y"], y)
            np.testing.assert_allclose(rows["x"], x)
        np.testing.assert_array_equal(table["id"], 100_000 + table["track_id"])
        assert (table[["parent_track_id", "parent_id"]] == -1).all(axis=None)
        assert (table["z"] == 0).all()
        n_rows += len(table)
    assert n_rows > 8 * 8 * len(labels) // 2  # most of the ~8+ cells per frame are found
    assert f"Wrote pseudo tracks of {len(labels)} FOVs" in capsys.readouterr().out

    first = next(root.rglob("*_tracks.csv"))
    before = first.read_bytes()
    first.write_text("edited by the user\n")
    assert script.main([str(plate_path), "--tracks-root", str(root)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert first.read_text() == "edited by the user\n"
    assert script.main([str(plate_path), "--tracks-root", str(root), "--overwrite"]) == 0
    assert first.read_bytes() == before


def test_create_pseudo_tracks_names_the_channels_present(label_plate, example_plate_dir, tmp_path, capsys):
    plate_path, _ = label_plate
    script = _load_example(PSEUDO_TRACKS)
    assert script.main([str(plate_path), "--tracks-root", str(tmp_path), "--label-channel", "DAPI"]) == 1
    assert "['nuclei_labels']" in capsys.readouterr().err
    image_plate = example_plate_dir / "synthetic" / "plate.zarr"
    assert script.main([str(image_plate), "--tracks-root", str(tmp_path)]) == 1
    assert "--label-channel" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.csv"))


def test_triplet_data_module_reads_pseudo_tracks(label_plate, example_plate_dir, tmp_path):
    from viscy_data.triplet import TripletDataModule

    plate_path, _ = label_plate
    root = tmp_path / "pseudo_tracks"
    _load_example(PSEUDO_TRACKS).create_pseudo_tracks(plate_path, root)
    data_path = example_plate_dir / "synthetic" / "plate.zarr"
    datamodule = TripletDataModule(
        data_path=str(data_path),
        tracks_path=str(root),
        source_channel=["Phase3D", "RFP"],
        z_range=(0, 5),
        initial_yx_patch_size=(32, 32),
        final_yx_patch_size=(32, 32),
        batch_size=8,
        num_workers=0,
    )
    datamodule.setup("predict")
    tracks = pd.concat(
        [pd.read_csv(path).assign(fov_name="/".join(path.parts[-4:-1])) for path in sorted(root.rglob("*.csv"))]
    )
    y, x = tracks["y"].astype(int), tracks["x"].astype(int)
    inside = y.between(17, 192 - 17) & x.between(17, 192 - 17)  # the whole 32 x 32 patch in the 192 x 192 image
    assert len(datamodule.predict_dataset) == int(inside.sum())
    batch = next(iter(datamodule.predict_dataloader()))
    assert batch["anchor"].shape == (8, 2, 5, 32, 32)
    cell = batch["index"][0]
    matches = tracks[
        (tracks["fov_name"] == cell["fov_name"]) & (tracks["track_id"] == cell["track_id"]) & (tracks["t"] == cell["t"])
    ]
    assert len(matches) == 1
    assert cell["id"] == 100_000 + cell["track_id"]
    cy, cx = int(matches["y"].iloc[0]), int(matches["x"].iloc[0])
    with open_ome_zarr(data_path, layout="hcs", mode="r") as plate:
        expected = np.asarray(plate[cell["fov_name"]]["0"][cell["t"], :, 0:5, cy - 16 : cy + 16, cx - 16 : cx + 16])
    np.testing.assert_array_equal(batch["anchor"][0].numpy(), expected)


# --------------------------------------------------------------------------------------------
# infection_analysis/infection_timecourse.py, embedding_explorer.py


@pytest.fixture(scope="module")
def example_embeddings(example_plate_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AnnData store of every annotated cell whose first feature separates infected cells."""
    from viscy_utils.callbacks.embedding_writer import write_embedding_dataset

    annotations = pd.read_csv(example_plate_dir / "synthetic" / "annotations.csv")
    rng = np.random.default_rng(0)
    features = rng.normal(size=(len(annotations), 16)).astype(np.float32)
    features[:, 0] += 8.0 * annotations["infection_state"].to_numpy()
    path = tmp_path_factory.mktemp("embeddings") / "embeddings.zarr"
    write_embedding_dataset(path, features, annotations[INDEX_COLUMNS], projections=features[:, :4])
    return path


def test_infection_timecourse_counts_predicted_infected_cells(example_embeddings, example_plate_dir, tmp_path, capsys):
    script = _load_example("infection_analysis/infection_timecourse.py")
    annotations_path = example_plate_dir / "synthetic" / "annotations.csv"
    output_dir = tmp_path / "analysis"
    arguments = ["--embeddings", str(example_embeddings), "--annotations", str(annotations_path)]
    assert script.main([*arguments, "--output-dir", str(output_dir)]) == 0
    course = pd.read_csv(output_dir / "infection_timecourse.csv")
    assert list(course.columns) == script.TIMECOURSE_COLUMNS

    annotations = pd.read_csv(annotations_path)
    annotations["condition"] = _well(annotations["fov_name"]).map(DEFAULT_WELL_CONDITIONS)
    expected = (
        annotations.groupby(["condition", "t"])["infection_state"].agg(n_cells="size", fraction="mean").reset_index()
    )
    assert len(course) == 2 * 8
    np.testing.assert_array_equal(course["condition"], expected["condition"])
    np.testing.assert_array_equal(course["t"], expected["t"])
    np.testing.assert_array_equal(course["n_cells"], expected["n_cells"])
    np.testing.assert_allclose(course["hours_post_infection"], course["t"] * 0.5)
    np.testing.assert_allclose(course["fraction_annotated_infected"], expected["fraction"])
    # the features separate the classes: every cell is predicted right
    np.testing.assert_allclose(course["fraction_predicted_infected"], expected["fraction"])
    uninfected = course[course["condition"] == "uninfected"]
    infected = course[course["condition"] == "infected"]
    assert uninfected["n_predicted_infected"].eq(0).all()
    assert infected["fraction_predicted_infected"].iloc[-1] > 0.5 > infected["fraction_predicted_infected"].iloc[0]
    assert (output_dir / "infection_timecourse.png").read_bytes().startswith(PNG_MAGIC)
    assert "validation 1.000" in capsys.readouterr().out

    assert script.main([*arguments, "--output-dir", str(output_dir)]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_infection_timecourse_uses_the_given_well_conditions(example_embeddings, example_plate_dir, tmp_path, capsys):
    script = _load_example("infection_analysis/infection_timecourse.py")
    arguments = [
        "--embeddings",
        str(example_embeddings),
        "--annotations",
        str(example_plate_dir / "synthetic" / "annotations.csv"),
        "--output-dir",
        str(tmp_path),
        "--well-condition",
        "A/1=mock",
        "--well-condition",
        "A/2=DENV",
        "--interval-minutes",
        "15",
    ]
    assert script.main(arguments) == 0
    course = pd.read_csv(tmp_path / "infection_timecourse.csv")
    assert sorted(course["condition"].unique()) == ["DENV", "mock"]
    np.testing.assert_allclose(course["hours_post_infection"], course["t"] * 0.25)
    assert "Leaving out" in capsys.readouterr().out
    assert script.main([*arguments[:-6], "--well-condition", "A1=mock"]) == 1
    assert "<row>/<col>=<condition>" in capsys.readouterr().err


def _find_component(component, component_id: str):
    """Depth-first search of a Dash layout for the component with ``id``."""
    if getattr(component, "id", None) == component_id:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children] if children is not None else []:
        found = _find_component(child, component_id)
        if found is not None:
            return found
    return None


@pytest.mark.slow
def test_embedding_explorer_plots_one_point_per_cell(example_embeddings, example_plate_dir, tmp_path, capsys):
    script = _load_example("embedding_explorer.py")
    synthetic = example_plate_dir / "synthetic"
    fovs = ["A/1/0", "A/2/1"]
    arguments = [
        "--data-path",
        str(synthetic / "plate.zarr"),
        "--tracks-path",
        str(synthetic / "tracks"),
        "--embeddings",
        str(example_embeddings),
        "--output-dir",
        str(tmp_path),
        "--no-server",
    ]
    explorer = script.build_explorer(script.parse_args([*arguments, "--fov", fovs[0], "--fov", fovs[1]]))
    annotations = pd.read_csv(synthetic / "annotations.csv")
    cells = annotations[annotations["fov_name"].isin(fovs)]
    expected = {(fov, track, t) for fov, track, t in cells[["fov_name", "track_id", "t"]].itertuples(index=False)}
    figure = _find_component(explorer.app.layout, "scatter").figure
    assert sum(len(trace.x) for trace in figure.data) == len(cells)
    rows = [point for trace in figure.data for point in trace.customdata[:, 0]]
    assert sorted(rows) == list(range(len(cells)))
    assert set(explorer.images) == expected
    for images in explorer.images.values():
        assert set(images) == {"Phase3D", "RFP"}
        assert all(base64.b64decode(data).startswith(b"\xff\xd8") for data in images.values())  # JPEG
    assert script.describe(explorer) == {"cells": len(cells), "thumbnails": len(cells), "points": len(cells), "fovs": 2}

    assert script.main([*arguments, "--fov", fovs[0]]) == 0  # returns: --no-server does not serve
    n_cells = int((annotations["fov_name"] == fovs[0]).sum())
    assert f"{n_cells} cells of 1 FOVs, {n_cells} with thumbnails, {n_cells} points" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# quickstart.py


@pytest.mark.slow
def test_quickstart_trains_embeds_and_classifies(tmp_path, monkeypatch, capsys):
    import anndata

    output_dir = tmp_path / "quickstart"
    script = str(EXAMPLES / "quickstart.py")
    monkeypatch.setattr(sys, "argv", [script, "--output-dir", str(output_dir), "--max-epochs", "1"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the 2-core test machines are shared
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "Trained 1 epochs" in out
    embeddings = anndata.read_zarr(output_dir / "embeddings.zarr")
    annotations = pd.read_csv(output_dir / "annotations.csv")
    assert f"{embeddings.n_obs} cells x 320 features" in out
    assert embeddings.X.shape == (embeddings.n_obs, 320)  # convnext_atto features
    assert embeddings.obsm["X_projections"].shape == (embeddings.n_obs, 32)
    assert embeddings.obsm["X_pca"].shape == (embeddings.n_obs, 8)
    assert 0.3 * len(annotations) < embeddings.n_obs <= len(annotations)  # cells whose patch fits in the image
    keys = set(zip(annotations["fov_name"], annotations["id"], strict=True))
    assert set(zip(embeddings.obs["fov_name"], embeddings.obs["id"], strict=True)) <= keys
    accuracies = [float(value) for value in re.findall(r"accuracy (\d\.\d+)", out)]
    assert len(accuracies) == 2
    assert all(0.0 <= value <= 1.0 for value in accuracies)
    assert (output_dir / "pca_infection_state.png").read_bytes().startswith(PNG_MAGIC)
    checkpoint = torch.load(output_dir / "dynaclr_quickstart.ckpt", weights_only=False, map_location="cpu")
    assert all(key.startswith("model.") for key in checkpoint["state_dict"])

    with pytest.raises(SystemExit, match="Refusing to overwrite"):
        runpy.run_path(script, run_name="__main__")


# --------------------------------------------------------------------------------------------
# configs/export_onnx.yml


@pytest.mark.slow
def test_export_onnx_config_exports_the_contrastive_encoder(tmp_path, viscy):
    import onnxruntime
    from pytorch_metric_learning.losses import NTXentLoss

    from dynaclr.engine import ContrastiveModule
    from viscy_models.contrastive import ContrastiveEncoder

    config = CONFIGS / "export_onnx.yml"
    model_args = yaml.safe_load(config.read_text())["model"]["init_args"]
    assert model_args["encoder"]["init_args"]["in_channels"] == 1
    assert model_args["encoder"]["init_args"]["in_stack_depth"] == 1
    torch.manual_seed(0)
    module = ContrastiveModule(
        ContrastiveEncoder(**model_args["encoder"]["init_args"]),
        loss_function=NTXentLoss(**model_args["loss_function"]["init_args"]),
        example_input_array_shape=model_args["example_input_array_shape"],
    )
    checkpoint = tmp_path / "dynaclr.ckpt"
    torch.save({"state_dict": module.state_dict()}, checkpoint)
    export_path = tmp_path / "dynaclr.onnx"
    viscy("export", "-c", str(config), "--ckpt_path", str(checkpoint), "--export_path", str(export_path))

    session = onnxruntime.InferenceSession(str(export_path))
    x = torch.rand(3, 1, 1, 96, 128)  # batch and YX differ from the example input (dynamic axes)
    features, projections = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected_features, expected_projections = module.eval()(x)
    assert features.shape == (3, 768)
    assert projections.shape == (3, 32)
    np.testing.assert_allclose(features, expected_features.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(projections, expected_projections.numpy(), rtol=1e-4, atol=1e-5)
