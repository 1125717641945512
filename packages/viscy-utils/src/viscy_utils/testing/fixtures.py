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

__all__ = ["run_command", "run_in_fresh_interpreter", "run_viscy", "synthetic_plate", "viscy"]


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


_RUN_MAIN_AND_NAME_HEAVY_MODULES = """
import importlib, sys
program, module = sys.argv[1:3]
del sys.argv[1:3]
sys.argv[0] = program
try:
    importlib.import_module(module).main()
except SystemExit as exit:
    status = exit.code
else:
    status = 0
print("HEAVY_MODULES", *sorted(m for m in ("torch", "monai") if m in sys.modules), file=sys.stderr)
sys.exit(status)
"""


def run_in_fresh_interpreter(
    program: str, module: str, *args: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``module.main()`` as the console script ``program ARGS`` in a fresh interpreter.

    Parameters
    ----------
    program : str
        The command's name as ``sys.argv[0]``, e.g. ``"viscy"``.
    module : str
        Module whose ``main()`` the console script calls, e.g. ``"viscy_utils.cli"``.
    *args : str
        The command's arguments.

    Returns
    -------
    tuple
        The finished process, and which of torch and MONAI it had imported when it exited.
    """
    result = subprocess.run(
        [sys.executable, "-c", _RUN_MAIN_AND_NAME_HEAVY_MODULES, program, module, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    (report,) = [line for line in result.stderr.splitlines() if line.startswith("HEAVY_MODULES")]
    return result, report.split()[1:]
