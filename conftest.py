"""Workspace-wide pytest setup.

`uv run --package viscy-X pytest` from the repository root installs only that package and its
dependencies, while the root `testpaths` cover every workspace member. Members that are not
installed in the running environment are therefore left out of collection (their conftest files
included), and the terminal summary says which ones, so nothing is skipped silently.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from functools import cache
from pathlib import Path

import pytest

WORKSPACE_ROOT = Path(__file__).parent


@cache
def _member_name(directory: Path) -> str | None:
    """Return the distribution name of the workspace member rooted at ``directory``, if any."""
    manifest = directory / "pyproject.toml"
    if directory.parent.parent != WORKSPACE_ROOT or not manifest.is_file():
        return None
    return tomllib.loads(manifest.read_text())["project"]["name"]


@cache
def _is_installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _uninstalled_members() -> list[str]:
    members = (_member_name(manifest.parent) for manifest in sorted(WORKSPACE_ROOT.glob("*/*/pyproject.toml")))
    return [name for name in members if name is not None and not _is_installed(name)]


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    member = _member_name(collection_path)
    if member is None or _is_installed(member):
        return None
    return True


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    missing = _uninstalled_members()
    if missing:
        terminalreporter.write_line(f"not collected, not installed in this environment: {', '.join(missing)}")
