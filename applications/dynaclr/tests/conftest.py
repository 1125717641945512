from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from lightning.pytorch import Trainer

from dynaclr.example_data import write_example_plate
from dynaclr.example_experiments import write_example_experiments
from viscy_utils.testing.fixtures import run_command, run_viscy, synthetic_plate, viscy  # noqa: F401

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONFIGS = EXAMPLES / "configs"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def example_plate_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding ``synthetic/`` as the example configs expect it; treat it as read-only."""
    root = tmp_path_factory.mktemp("example")
    write_example_plate(root / "synthetic", seed=0)
    return root


@pytest.fixture
def example_workdir(example_plate_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory whose ``synthetic`` links to the shared example plate."""
    (tmp_path / "synthetic").symlink_to(example_plate_dir / "synthetic", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def dynaclr(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Run ``dynaclr ARGS`` in this process as the console script does; fail on a non-zero exit."""
    from dynaclr.cli import main

    def run(*args: str) -> None:
        monkeypatch.setattr(sys, "argv", ["dynaclr", *args])
        with pytest.raises(SystemExit) as exit_:
            main(list(args))
        assert exit_.value.code in (0, None), f"dynaclr {' '.join(args)} exited with {exit_.value.code}"

    return run


def cpu_trainer(root: Path, **kwargs) -> Trainer:
    """A quiet single-process CPU ``Trainer`` writing under ``root``; ``kwargs`` override the defaults."""
    defaults = {
        "accelerator": "cpu",
        "devices": 1,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": root,
    }
    return Trainer(**{**defaults, **kwargs})


@pytest.fixture(scope="session")
def experiments_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding ``synthetic/experiments/`` as experiments.yml expects it; read-only."""
    root = tmp_path_factory.mktemp("experiments")
    write_example_experiments(root / "synthetic" / "experiments")
    return root


@pytest.fixture
def experiments_workdir(experiments_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory whose ``synthetic`` links to the shared example experiments."""
    (tmp_path / "synthetic").symlink_to(experiments_dir / "synthetic", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path
