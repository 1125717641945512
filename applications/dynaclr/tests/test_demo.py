"""``dynaclr demo --quick``, run once for real through the command line, and what it leaves behind."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score

from dynaclr.cli import main as dynaclr_main
from dynaclr.demo import command
from dynaclr.demo.command import DEMO_OUTPUTS, claim_output_dir
from dynaclr.demo.evaluation import out_of_fold_probe_scores
from dynaclr.demo.figure import plot_probe_scores
from dynaclr.demo.settings import DEFAULT, GPU, HELD_OUT_EXPERIMENT, QUICK, demo_settings
from dynaclr.experiment import ExperimentRegistry
from dynaclr.index import MultiExperimentIndex
from viscy_utils.cli import main as viscy_main

REPOSITORY = Path(__file__).resolve().parents[3]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROWS = ("DynaCLR (trained)", "random encoder (untrained)", "intensity features")
SCORE = r"\d\.\d{3} ± \d\.\d{3}"


PROGRAMS = {"dynaclr": dynaclr_main, "viscy": viscy_main}


def _run(program: str, *args: str) -> tuple[int, str, str]:
    """Run ``PROGRAM ARGS`` (``dynaclr`` or ``viscy``) in this process; return its exit code, stdout and stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        patch.setattr(sys, "argv", [program, *args])
        try:
            PROGRAMS[program](list(args))
        except SystemExit as exit_:  # dynaclr always exits; viscy returns when it succeeds
            code = exit_.code or 0
    return code, stdout.getvalue(), stderr.getvalue()


def _root_readme_commands() -> list[list[str]]:
    """The ``uv run`` commands of the root README's shell blocks, without ``uv run``, in order."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", (REPOSITORY / "README.md").read_text(), flags=re.DOTALL):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] == ["uv", "run"]:
                commands.append(words[2:])
    return commands


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Train on one CPU thread: the 2-core test machines are shared, and the same thread count gives the same sums."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``dynaclr demo --quick`` into a fresh directory: the output directory and what it printed."""
    output_dir = tmp_path_factory.mktemp("demo") / "out"
    with _one_thread():
        code, out, err = _run("dynaclr", "demo", "--quick", "--output-dir", str(output_dir), "--seed", "3")
    assert code == 0, err
    return output_dir, out


def _table_rows(text: str) -> dict[str, list[str]]:
    """The rows of the first table that names the embeddings (the scores, before the probe-score table)."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells and cells[0] in ROWS:
            rows.setdefault(cells[0], cells[1:])
    return rows


@pytest.mark.slow
def test_demo_prints_a_line_per_stage_and_the_table_of_the_report(quick_demo):
    output_dir, out = quick_demo
    stages = re.findall(r"^\[(\d)/5\] .*: done in \d+\.\d s$", out, flags=re.MULTILINE)
    assert stages == ["1", "2", "3", "4", "5"]
    report = (output_dir / "report.md").read_text()
    printed, reported = _table_rows(out), _table_rows(report)
    assert list(reported) == list(ROWS)
    assert printed == reported
    for name, cells in reported.items():
        auroc, balanced_accuracy, smoothness, dynamic_range = cells
        assert re.fullmatch(SCORE, auroc), (name, auroc)
        assert re.fullmatch(SCORE, balanced_accuracy), (name, balanced_accuracy)
        assert 0.0 <= float(auroc.split()[0]) <= 1.0
        assert 0.0 < float(smoothness) < 2.0
        float(dynamic_range)


@pytest.mark.slow
def test_report_names_settings_files_commands_and_timings(quick_demo):
    output_dir, _ = quick_demo
    report = (output_dir / "report.md").read_text()
    assert "- demo: `quick`" in report
    assert f"- max_epochs: `{QUICK.max_epochs}`" in report
    # regression: the summary gave limit_train_batches, not the shorter epochs the sampler made
    (checkpoint,) = [Path(path) for path in re.findall(r"`(/[^`]+last\.ckpt)`", report)]
    steps = torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"]
    batches_per_epoch, remainder = divmod(steps, QUICK.max_epochs)
    assert remainder == 0
    assert f"trained for {QUICK.max_epochs} epochs of {batches_per_epoch} batches of {QUICK.batch_size} cells" in report
    assert f"uv run dynaclr fit -c {output_dir / 'fit.yml'}" in report
    assert f"uv run dynaclr predict -c {output_dir / 'predict_learned.yml'}" in report
    for path in re.findall(r"`(/[^`]+)`", report):
        assert Path(path).exists(), path
    timings = re.findall(r"^\| (.+) \| (\d+\.\d) \|$", report, flags=re.MULTILINE)
    assert len(timings) == 4  # every stage before the report itself
    written = {entry.name for entry in output_dir.iterdir()} - {"linear_classifiers"}  # a later test trains one
    assert written == set(DEMO_OUTPUTS) - {"linear_classifiers"}


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert 10_000 < len(data) < 1_000_000
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_figures_are_pngs_of_sensible_size(quick_demo):
    output_dir, _ = quick_demo
    width, height = _png_size(output_dir / "embeddings.png")
    assert 400 <= width <= 2000
    assert 400 <= height <= 2000
    width, height = _png_size(output_dir / "probe_scores.png")  # one panel per embedding, side by side
    assert 600 <= width <= 2000
    assert 150 <= height <= 600


@pytest.mark.slow
def test_report_shows_the_out_of_fold_probe_scores_of_every_embedding(quick_demo):
    output_dir, _ = quick_demo
    report = (output_dir / "report.md").read_text()
    section = report.split("### Infection probe scores by infection state")[1].split("\n## ")[0]
    rows = re.findall(r"^\| (.+?) \| (\d\.\d{3}) \| (\d+\.\d)% \| (\d+\.\d)% \|$", section, re.MULTILINE)
    assert [row[0] for row in rows] == list(ROWS)
    for _, auroc, false_positives, false_negatives in rows:
        assert 0.0 <= float(auroc) <= 1.0
        assert 0.0 <= float(false_positives) <= 100.0
        assert 0.0 <= float(false_negatives) <= 100.0
    assert "![infection probe scores](probe_scores.png)" in section
    assert f"`{output_dir / 'probe_scores.png'}`" in report


def _tracks_adata(features: np.ndarray, infected: np.ndarray, frames: int) -> ad.AnnData:
    """Cells of ``len(features) // frames`` tracks of ``frames`` frames each."""
    n_cells = len(features)
    obs = pd.DataFrame(
        {
            "fov_name": "A/1/0",
            "track_id": np.repeat(np.arange(n_cells // frames), frames),
            "t": np.tile(np.arange(frames), n_cells // frames),
            "infection_state": np.where(infected, "infected", "uninfected"),
        },
        index=[str(i) for i in range(n_cells)],
    )
    return ad.AnnData(features.astype(np.float32), obs=obs)


def test_out_of_fold_probe_scores_never_score_a_cell_with_a_probe_that_saw_its_track():
    rng = np.random.default_rng(0)
    n_tracks, frames = 40, 5
    infected = np.repeat(rng.random(n_tracks) < 0.5, frames)
    # each track's own direction, whatever its label: a probe that saw the track would score it perfectly
    identity = np.repeat(np.eye(n_tracks), frames, axis=0) + 0.01 * rng.standard_normal((n_tracks * frames, n_tracks))
    scores = out_of_fold_probe_scores(_tracks_adata(identity, infected, frames), n_folds=5, seed=0)
    assert scores.shape == (n_tracks * frames,)
    assert ((scores >= 0.0) & (scores <= 1.0)).all()
    assert abs(scores[infected].mean() - scores[~infected].mean()) < 0.2
    # a feature that does carry the label separates the held-out cells
    informative = np.c_[
        infected + 0.3 * rng.standard_normal(n_tracks * frames), rng.standard_normal((n_tracks * frames, 4))
    ]
    scores = out_of_fold_probe_scores(_tracks_adata(informative, infected, frames), n_folds=5, seed=0)
    assert roc_auc_score(infected, scores) > 0.95


def test_probe_scores_figure_has_a_panel_per_embedding(tmp_path):
    rng = np.random.default_rng(0)
    infected = rng.random(200) < 0.3
    scores = {name: (rng.random(200), infected) for name in ("a", "b", "c")}
    path = plot_probe_scores(scores, tmp_path / "scores.png")
    width, _ = _png_size(path)
    assert width == pytest.approx(3 * 4 * 80, rel=0.05)  # three 4-inch panels at 80 dpi


@pytest.mark.slow
def test_report_shows_the_online_evaluation_of_every_epoch_against_the_untrained_encoder(quick_demo):
    output_dir, _ = quick_demo
    report = (output_dir / "report.md").read_text()
    section = report.split("## Representation quality during training")[1].split("\n## ")[0]
    number = r"(\d+\.\d{3})"
    row = rf"^\| (.+?) \| {number} \| {number} \| {number} \| {number} \| {number} \|$"
    rows = re.findall(row, section, re.MULTILINE)
    names = [row[0] for row in rows]
    assert names == [
        *(f"epoch {epoch}" for epoch in range(1, QUICK.max_epochs + 1)),
        "random encoder (untrained), all cells",
        "DynaCLR (trained), all cells",
    ]
    for _, knn, probe, rank_features, rank_projections, smoothness in rows:
        assert 0.0 <= float(knn) <= 1.0
        assert 0.0 <= float(probe) <= 1.0
        assert float(rank_features) >= 1.0
        assert 1.0 <= float(rank_projections) <= 32.0  # the demo's projection_dim
        assert float(smoothness) > 0.0
    # the epochs' rows are what the run logged
    (metrics_csv,) = (output_dir / "training").rglob("metrics.csv")
    logged = pd.read_csv(metrics_csv).dropna(subset=["online_eval/knn_accuracy/infection_state"])
    assert [f"{value:.3f}" for value in logged["online_eval/knn_accuracy/infection_state"]] == [
        row[1] for row in rows[: QUICK.max_epochs]
    ]
    data = (output_dir / "training_curves.png").read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert 10_000 < len(data) < 1_000_000


@pytest.mark.slow
def test_embeddings_hold_every_cell_of_the_held_out_experiment(quick_demo):
    output_dir, _ = quick_demo
    fit = yaml.safe_load((output_dir / "fit.yml").read_text())
    data = fit["data"]["init_args"]
    registry = ExperimentRegistry.from_yaml(data["experiments_yaml"]).subset([HELD_OUT_EXPERIMENT])
    index_args = {key: data[key] for key in ("z_range", "yx_patch_size", "max_border_shift")}
    cells = MultiExperimentIndex(registry, **index_args).tracks
    annotations = pd.read_csv(output_dir / "study" / HELD_OUT_EXPERIMENT / "annotations.csv")
    stores = {name: ad.read_zarr(output_dir / "embeddings" / f"{name}.zarr") for name in ("learned", "random")}
    for name, embeddings in stores.items():
        assert embeddings.n_obs == len(cells), name
        assert embeddings.X.shape == (len(cells), 320)  # convnextv2_atto features
        assert embeddings.obsm["X_projections"].shape == (len(cells), 32)
        obs = embeddings.obs
        assert {"fov_name", "track_id", "t", "id", "parent_track_id", "experiment", "hours_post_infection"} <= set(obs)
        assert set(obs["experiment"]) == {HELD_OUT_EXPERIMENT}
        keys = list(zip(obs["fov_name"], obs["id"], strict=True))
        assert len(set(keys)) == len(keys)
        assert set(keys) <= set(zip(annotations["fov_name"], annotations["id"], strict=True))
    assert (stores["learned"].X != stores["random"].X).any()
    intensity = ad.read_zarr(output_dir / "embeddings" / "intensity.zarr")
    assert intensity.X.shape == (len(cells), 2 * 9)  # mean, std and 7 percentiles of 2 channels
    pd.testing.assert_frame_equal(intensity.obs, stores["learned"].obs)


@pytest.mark.slow
def test_rerun_without_overwrite_stops_before_any_work(quick_demo, monkeypatch):
    output_dir, _ = quick_demo
    before = {path: path.stat().st_mtime_ns for path in output_dir.rglob("*")}

    def no_work(*args, **kwargs):
        raise AssertionError("the demo started working")

    monkeypatch.setattr(command, "run_demo", no_work)
    code, out, err = _run("dynaclr", "demo", "--quick", "--output-dir", str(output_dir))
    assert code == 1
    assert f"{output_dir} exists and is not empty: nothing was done" in err
    assert "--overwrite" in err
    assert out == ""
    assert {path: path.stat().st_mtime_ns for path in output_dir.rglob("*")} == before


@pytest.mark.slow
def test_written_fit_config_trains_with_dynaclr_fit(quick_demo):
    output_dir, _ = quick_demo
    checkpoint = next((output_dir / "training").rglob("last.ckpt"))
    written = checkpoint.stat().st_mtime_ns
    code, _, err = _run("dynaclr", "fit", "-c", str(output_dir / "fit.yml"), "--trainer.fast_dev_run=true")
    assert code == 0, err
    assert checkpoint.stat().st_mtime_ns == written


@pytest.mark.slow
def test_the_config_lightning_saved_holds_the_transforms_keys(quick_demo):
    output_dir, _ = quick_demo
    written = yaml.safe_load((output_dir / "fit.yml").read_text())["data"]["init_args"]
    saved_text = next((output_dir / "training").rglob("config.yaml")).read_text()
    assert "Unable to serialize" not in saved_text
    saved = yaml.safe_load(saved_text)["data"]["init_args"]
    for group in ("normalizations", "augmentations"):
        assert [t["init_args"]["keys"] for t in saved[group]] == [t["init_args"]["keys"] for t in written[group]]


@pytest.mark.slow
def test_written_fit_config_reproduces_the_demo_training(quick_demo):
    output_dir, _ = quick_demo
    training = output_dir / "training"
    before = set(training.rglob("last.ckpt"))
    with _one_thread():
        code, _, err = _run("dynaclr", "fit", "-c", str(output_dir / "fit.yml"))
    assert code == 0, err
    (again,) = set(training.rglob("last.ckpt")) - before
    trained = torch.load(training / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    retrained = torch.load(again, weights_only=True)["state_dict"]
    assert retrained.keys() == trained.keys()
    for name, weights in trained.items():
        torch.testing.assert_close(retrained[name], weights, rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_written_predict_and_classifier_configs_run_as_the_report_says(quick_demo):
    output_dir, _ = quick_demo
    store = output_dir / "embeddings" / "learned.zarr"
    before = ad.read_zarr(store)
    code, _, err = _run("dynaclr", "predict", "-c", str(output_dir / "predict_learned.yml"))
    assert code == 0, err
    again = ad.read_zarr(store)
    pd.testing.assert_frame_equal(again.obs, before.obs)
    assert again.X == pytest.approx(before.X, abs=1e-5)
    code, _, err = _run("dynaclr", "train-linear-classifier", "-c", str(output_dir / "linear_classifier.yml"))
    assert code == 0, err
    assert (output_dir / "linear_classifiers" / "linear-classifier-infection_state-sensor.joblib").is_file()


def test_overwrite_replaces_the_demo_outputs_and_keeps_other_files(tmp_path):
    for name in DEMO_OUTPUTS[:3]:
        (tmp_path / name).mkdir() if "." not in name else (tmp_path / name).write_text("old")
    (tmp_path / "notes.txt").write_text("mine")
    claim_output_dir(tmp_path, overwrite=True)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_an_empty_output_dir_is_used_and_a_file_is_refused(tmp_path):
    claim_output_dir(tmp_path / "new" / "dir", overwrite=False)
    assert (tmp_path / "new" / "dir").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(Exception, match="is a file, not a directory"):
        claim_output_dir(tmp_path / "file", overwrite=True)


def test_root_readme_quick_start_is_the_demo_then_the_tests():
    commands = _root_readme_commands()
    assert commands[:2] == [["dynaclr", "demo"], ["pytest"]]
    assert [command[:2] for command in commands[2:]] == [
        ["viscy", "preprocess"],
        ["dynaclr", "fit"],
        ["dynaclr", "predict"],
        ["dynaclr", "train-linear-classifier"],
        ["--package", "viscy-data"],
    ]


@pytest.mark.slow
def test_the_readme_test_command_reports_its_pass_count_also_with_q():
    """Regression: the root pytest addopts held -q, so `uv run pytest -q` printed no pass count."""
    test = "applications/dynaclr/tests/test_demo.py::test_root_readme_quick_start_is_the_demo_then_the_tests"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^1 passed\b", result.stdout, flags=re.MULTILINE), result.stdout


@pytest.mark.slow
def test_root_readme_steps_from_the_demo_to_your_data_run_as_written(quick_demo, tmp_path, monkeypatch):
    """After the other tests of the demo's output: it rewrites the study's normalization statistics and trains again."""
    output_dir, _ = quick_demo
    # as the demo left it: an earlier test may have trained the classifier
    shutil.rmtree(output_dir / "linear_classifiers", ignore_errors=True)
    checkpoints = set((output_dir / "training").rglob("last.ckpt"))
    (tmp_path / "demo_output").symlink_to(output_dir, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    steps = [command for command in _root_readme_commands() if command[0] in PROGRAMS and command[1] != "demo"]
    assert len(steps) == 4
    for program, *args in steps:
        code, _, err = _run(program, *args)
        assert code == 0, (program, args, err)
    assert len(set((output_dir / "training").rglob("last.ckpt")) - checkpoints) == 1
    assert (output_dir / "linear_classifiers" / "linear-classifier-infection_state-sensor.joblib").is_file()


def test_a_negative_seed_is_refused_before_any_work(tmp_path):
    code, _, err = _run("dynaclr", "demo", "--seed", "-1", "--output-dir", str(tmp_path / "out"))
    assert code == 2
    assert "Invalid value for '--seed': -1 is not in the range x>=0" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("quick", "cuda", "expected"),
    [(False, False, DEFAULT), (False, True, GPU), (True, True, QUICK), (True, False, QUICK)],
)
def test_the_demo_trains_longer_on_a_gpu_unless_quick(monkeypatch, quick, cuda, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert demo_settings(quick) is expected
    assert (
        GPU.max_epochs * GPU.train_batches * GPU.batch_size
        > 5 * DEFAULT.max_epochs * DEFAULT.train_batches * DEFAULT.batch_size
    )
