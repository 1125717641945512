from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn
from torch.utils.data import Dataset

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


class PairsDataset(Dataset):
    """16 fixed random ``(1, 2, 8, 8)`` anchors, each with a brightness-shifted positive."""

    def __init__(self) -> None:
        self.images = torch.rand(16, 1, 2, 8, 8, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"anchor": self.images[index], "positive": self.images[index] * 0.9 + 0.05}


class TinyEncoder(nn.Module):
    """An encoder of ``PairsDataset`` images: 8 features, 4-dimensional projections."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Linear(8, 8)
        self.projection = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(nn.functional.adaptive_avg_pool3d(x, (2, 2, 2)).flatten(1))
        return features, self.projection(features)
