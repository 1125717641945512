"""Write the files of a command, all or none, never replacing one without ``--overwrite``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import click

__all__ = ["refuse_existing", "write_files"]


def refuse_existing(paths: Iterable[Path], overwrite: bool) -> None:
    """Stop before writing anything when an output exists and ``overwrite`` is False.

    Parameters
    ----------
    paths : iterable of Path
        The files the command is about to write.
    overwrite : bool
        Whether replacing them is allowed.

    Raises
    ------
    click.ClickException
        Naming every existing output.
    """
    existing = [str(path) for path in paths if path.exists()]
    if existing and not overwrite:
        raise click.ClickException(
            f"Refusing to overwrite existing file(s): {', '.join(existing)}. Pass --overwrite to replace them."
        )


def write_files(contents: Mapping[Path, str], overwrite: bool, executable: Iterable[Path] = ()) -> None:
    """Write text files, after checking that none of them exists (unless ``overwrite``).

    Parameters
    ----------
    contents : Mapping of Path to str
        Each file and its text; parent directories are created.
    overwrite : bool
        Whether existing files may be replaced.
    executable : iterable of Path
        Files among ``contents`` to mark executable (``chmod 755``).

    Raises
    ------
    click.ClickException
        If a file exists and ``overwrite`` is False; nothing is written then.
    """
    refuse_existing(contents, overwrite)
    for path, text in contents.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for path in executable:
        path.chmod(0o755)
