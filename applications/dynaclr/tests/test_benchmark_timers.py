"""The training benchmark's step split: each part is timed where it happens (no negative transfer time)."""

import subprocess
import sys
from pathlib import Path

import pytest

TRAINING_BENCHMARK = Path(__file__).parents[3] / "benchmarks" / "training.py"


@pytest.mark.slow
def test_training_benchmark_times_the_transfer_and_the_augmentation_of_each_step(tmp_path):
    """Regression: the transfer hook was never timed (Lightning saw through functools.wraps), so it came out < 0."""
    result = subprocess.run(
        [sys.executable, str(TRAINING_BENCHMARK), "--quick", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    header, *rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    (loader_row,) = [row for row in rows if row.startswith("| TripletDataModule")]
    values = dict(zip(columns, (cell.strip() for cell in loader_row.strip("|").split("|")), strict=True))
    assert float(values["transfer ms"]) >= 0
    assert float(values["augment ms"]) > 0
    assert float(values["loader wait ms"]) >= 0
