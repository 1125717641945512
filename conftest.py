"""Workspace-wide pytest setup.

`uv run --package viscy-X pytest` from the repository root installs only that package and its
dependencies, while the root `testpaths` name every package's tests. Test directories of workspace
members that are not installed in the running environment are therefore left out of collection,
and the summary says which ones, so nothing is skipped silently.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from functools import cache
from pathlib import Path

import pytest

WORKSPACE_ROOT = Path(__file__).parent


@cache
def _member_of(tests_dir: Path) -> str | None:
    """Return the distribution name of the workspace member owning ``tests_dir``."""
    manifest = tests_dir.parent / "pyproject.toml"
    if not manifest.is_file():
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
    members = (_member_of(path) for path in sorted(WORKSPACE_ROOT.glob("*/*/tests")))
    return [name for name in members if name is not None and not _is_installed(name)]


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # testpaths entries are initial arguments, which pytest never offers to this hook, so the
    # decision is taken for each entry below a member's tests directory instead.
    tests_dir = collection_path.parent if collection_path.is_file() else collection_path
    while tests_dir.name != "tests" and tests_dir != tests_dir.parent:
        tests_dir = tests_dir.parent
    member = _member_of(tests_dir)
    if member is None or _is_installed(member):
        return None
    return True


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    missing = _uninstalled_members()
    if missing:
        terminalreporter.write_line(f"not collected, not installed in this environment: {', '.join(missing)}")
