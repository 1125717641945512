"""Through real ``dynaclr`` commands: Ctrl-C and ``--ckpt_path last`` resume exactly; failures end in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dynaclr.example_data import write_example_plate
from viscy_utils.testing.fixtures import run_command

from .conftest import CONFIGS

MULTI_FIT = [
    "-c",
    str(CONFIGS / "multi_experiment_fit.yml"),
    "-c",
    str(CONFIGS / "multi_experiment_fit_synthetic_cpu.yml"),
    f"--data.init_args.experiments_yaml={CONFIGS / 'experiments.yml'}",
    "--trainer.max_epochs=2",
    "--trainer.limit_train_batches=6",
    "--trainer.limit_val_batches=0",
    "--trainer.enable_progress_bar=false",
]


def _fit(workdir: Path, version: str, *args: str) -> tuple[int, str]:
    """Run ``dynaclr fit`` of the synthetic multi-experiment config, recording its batches in ``<version>.jsonl``."""
    result = run_command(
        "dynaclr.cli",
        "fit",
        *MULTI_FIT,
        f"--trainer.logger.init_args.version={version}",
        "--trainer.callbacks+=viscy_utils.testing.callbacks.RecordBatches",
        f"--trainer.callbacks.path={workdir / f'{version}.jsonl'}",
        *args,
        cwd=workdir,
    )
    return result.returncode, result.stderr


def _batches(path: Path) -> list[list]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_ctrl_c_mid_step_then_ckpt_path_last_trains_exactly_the_uninterrupted_runs_batches(
    experiments_workdir, monkeypatch
):
    returncode, stderr = _fit(experiments_workdir, "uninterrupted")
    assert returncode == 0, stderr
    # SIGINT when step 4 of 6 (epoch 0) starts: its batch was already transferred and counted by the sampler
    stop = ["--trainer.callbacks+=viscy_utils.testing.callbacks.StopAtStep", "--trainer.callbacks.step=4"]
    returncode, stderr = _fit(experiments_workdir, "interrupted", *stop)
    assert returncode == 1
    assert "at epoch 0, step 4 after KeyboardInterrupt; run again with --ckpt_path last" in stderr
    last = experiments_workdir / "logs/lightning_logs/interrupted/checkpoints/last.ckpt"
    saved = torch.load(last, weights_only=False)
    assert (saved["global_step"], saved["MultiExperimentDataModule"]["sampler"]["batches_yielded"]) == (4, 4)
    monkeypatch.setenv("VISCY_LOG_LEVEL", "INFO")  # the line naming the checkpoint that resumes is INFO
    returncode, stderr = _fit(experiments_workdir, "interrupted", "--ckpt_path", "last")
    assert returncode == 0, stderr
    assert f"Resuming from {last}" in stderr, stderr
    uninterrupted = _batches(experiments_workdir / "uninterrupted.jsonl")
    assert len(uninterrupted) == 12
    # the same epochs, batch indices, global steps and bit-identical augmented batches
    assert _batches(experiments_workdir / "interrupted.jsonl") == uninterrupted


@pytest.mark.slow
def test_predict_on_a_corrupted_chunk_fails_in_one_line(tmp_path):
    plate = write_example_plate(tmp_path / "synthetic", seed=0)
    plate.corrupt_chunk("A/1/0", t=1, channel=0)
    result = run_command(
        "dynaclr.cli",
        "predict",
        "-c",
        str(CONFIGS / "predict.yml"),
        "-c",
        str(CONFIGS / "predict_synthetic_cpu.yml"),
        "--ckpt_path=null",
        "--trainer.enable_progress_bar=false",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr  # regression: a 99-line traceback
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"ArrayReadError: Cannot read time point 1 of array '0' of FOV 'A/1/0' in store '{tmp_path / 'synthetic'}"
        )
    )


def test_a_config_typo_fails_in_one_line_with_the_key_meant(tmp_path):
    typo = tmp_path / "typo.yml"
    typo.write_text("data:\n  init_args:\n    batchsize: 8\n")
    result = run_command("dynaclr.cli", "fit", "-c", str(CONFIGS / "fit.yml"), "-c", str(typo), cwd=tmp_path)
    assert result.returncode == 1
    assert "usage:" not in result.stderr  # regression: exit 2 after about 50 lines of usage text
    assert result.stderr.strip().splitlines()[-1] == (
        "data (viscy_data.triplet.TripletDataModule) has no argument 'batchsize'; did you mean 'batch_size'?"
    )
    assert not (tmp_path / "logs").exists()
