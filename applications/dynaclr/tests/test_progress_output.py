"""``dynaclr fit`` with its stdout piped, as under SLURM or nohup, prints its progress as lines."""

from __future__ import annotations

import re

import pytest

from viscy_utils.testing.fixtures import run_command

from .conftest import CONFIGS


@pytest.mark.slow
def test_piped_fit_prints_progress_lines(example_workdir):
    result = run_command(
        "dynaclr.cli",
        "fit",
        "-c",
        str(CONFIGS / "fit.yml"),
        "-c",
        str(CONFIGS / "fit_synthetic_cpu.yml"),
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=2",
        "--trainer.enable_model_summary=false",
        cwd=example_workdir,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    validation = [line for line in lines if line.startswith("validate epoch 1/1 done: 2 steps in ")]
    training = [line for line in lines if line.startswith("train epoch 1/1 done: 2 steps in ")]
    assert len(validation) == 1, result.stdout
    assert len(training) == 1, result.stdout
    assert re.search(r"\| [\d.]+ it/s, [\d.]+ samples/s \| ETA fit 0:00:00 \| .*loss/train_step=[\d.]+", training[0])
    assert "loss/val=" in validation[0]
