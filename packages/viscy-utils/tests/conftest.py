from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

TESTING_MODULES = Path(__file__).parent / "testing_modules"


@pytest.fixture
def testing_modules(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``viscy_utils_testing`` importable by class_path, in this process and in subprocesses."""
    monkeypatch.syspath_prepend(str(TESTING_MODULES))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(TESTING_MODULES), os.environ.get("PYTHONPATH")]))
    )
    return TESTING_MODULES


@pytest.fixture(scope="session")
def synthetic_plate(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic plate (4 wells x 2 FOVs, 4 frames, 2 channels); treat it as read-only."""
    from viscy_data.synthetic import write_synthetic_plate

    root = tmp_path_factory.mktemp("plate")
    return write_synthetic_plate(
        root / "plate.zarr", tracks_path=root / "tracks", annotations_path=root / "annotations.csv", seed=0
    )


def _run_viscy(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the ``viscy`` command line (``python -m viscy_utils.cli``) in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "viscy_utils.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "VISCY_LOG_LEVEL": os.environ.get("VISCY_LOG_LEVEL", "WARNING")},
    )


@pytest.fixture
def run_viscy():
    """Run ``python -m viscy_utils.cli ARGS`` in a subprocess (slow: a fresh Lightning import)."""
    return _run_viscy


@pytest.fixture
def viscy(monkeypatch: pytest.MonkeyPatch):
    """Run ``viscy ARGS`` in this process, exactly as the console script does (argv only)."""
    from viscy_utils.cli import run_cli

    def run(*args: str):
        monkeypatch.setattr(sys, "argv", ["viscy", *args])
        return run_cli()

    return run


def _make_tracked_embeddings(
    n_tracks: int = 6, n_frames: int = 5, dim: int = 8, seed: int = 0, step: float = 0.05
) -> tuple[np.ndarray, pd.DataFrame]:
    """Embeddings of cells that drift slowly in time from a random start: rows are shuffled."""
    rng = np.random.default_rng(seed)
    starts = rng.normal(size=(n_tracks, dim))
    rows, features = [], []
    for track in range(n_tracks):
        position = starts[track].copy()
        for t in range(n_frames):
            features.append(position.copy())
            rows.append({"fov_name": f"A/{1 + track % 2}/0", "track_id": track, "t": t, "id": track * 100 + t})
            position += step * rng.normal(size=dim)
    order = rng.permutation(len(rows))
    return np.asarray(features)[order], pd.DataFrame(rows).iloc[order].reset_index(drop=True)


@pytest.fixture
def make_tracked_embeddings():
    return _make_tracked_embeddings
