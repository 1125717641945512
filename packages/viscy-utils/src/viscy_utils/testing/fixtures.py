"""pytest fixtures shared by the tests of the VisCy packages and applications.

Import the fixtures a test folder needs into its ``conftest.py``::

    from viscy_utils.testing.fixtures import run_viscy, synthetic_plate, viscy  # noqa: F401
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from viscy_data.synthetic import SyntheticPlate
    from viscy_utils.cli import VisCyCLI

__all__ = ["run_command", "run_viscy", "synthetic_plate", "viscy"]


@pytest.fixture(scope="session")
def synthetic_plate(tmp_path_factory: pytest.TempPathFactory) -> SyntheticPlate:
    """Write a small synthetic plate with tracks and annotations (4 wells x 2 FOVs, 4 frames, 2 channels).

    The plate is shared by every test of the session: treat it as read-only (copy it first to
    write into it).
    """
    from viscy_data.synthetic import write_synthetic_plate

    root = tmp_path_factory.mktemp("plate")
    return write_synthetic_plate(
        root / "plate.zarr", tracks_path=root / "tracks", annotations_path=root / "annotations.csv", seed=0
    )


def run_command(
    module: str, *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m MODULE ARGS`` in a subprocess, as its console script would, and capture its output.

    Parameters
    ----------
    module : str
        Module run with ``-m``, e.g. ``"viscy_utils.cli"``.
    *args : str
        Command-line arguments.
    cwd : Path, optional
        Working directory.
    timeout : float
        Seconds before the subprocess is killed.

    Returns
    -------
    subprocess.CompletedProcess
        The finished process, with ``stdout`` and ``stderr`` as text.
    """
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "VISCY_LOG_LEVEL": os.environ.get("VISCY_LOG_LEVEL", "WARNING")},
    )


@pytest.fixture
def run_viscy() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``viscy ARGS`` in a subprocess (slow: a fresh Lightning import)."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run_command("viscy_utils.cli", *args, cwd=cwd, timeout=timeout)

    return run


@pytest.fixture
def viscy(monkeypatch: pytest.MonkeyPatch) -> Callable[..., VisCyCLI]:
    """Run ``viscy ARGS`` in this process, exactly as the console script does (argv only)."""
    from viscy_utils.cli import run_cli

    def run(*args: str) -> VisCyCLI:
        monkeypatch.setattr(sys, "argv", ["viscy", *args])
        return run_cli()

    return run
