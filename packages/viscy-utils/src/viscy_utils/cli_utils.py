"""Helpers for command-line tools: markdown tables and YAML configs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["format_markdown_table", "load_config"]


def _format_cell(value: Any) -> str:
    """Render one table cell; floats get three decimals."""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _title(key: str) -> str:
    """Turn ``snake_case`` keys into ``Title Case`` labels."""
    return str(key).replace("_", " ").title()


def format_markdown_table(
    data: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    title: str | None = None,
    headers: Sequence[str] | None = None,
) -> str:
    """Format metrics as a markdown table.

    Parameters
    ----------
    data : Mapping or sequence of Mapping
        A single ``{name: value}`` mapping (one row per key) or a list of records
        (one row per record).
    title : str, optional
        Written as a ``## title`` heading above the table.
    headers : sequence of str, optional
        Column headers. Defaults to ``["Metric", "Value"]`` for a mapping and to the first
        record's keys (title-cased) for records.

    Returns
    -------
    str
        The markdown text, ending with a newline.
    """
    lines: list[str] = []
    if title is not None:
        lines += [f"## {title}", ""]
    if isinstance(data, Mapping):
        headers = list(headers) if headers is not None else ["Metric", "Value"]
        rows = [[_title(key), _format_cell(value)] for key, value in data.items()]
    else:
        records = list(data)
        keys = list(records[0].keys()) if records else []
        headers = list(headers) if headers is not None else [_title(key) for key in keys]
        rows = [[_format_cell(record.get(key, "")) for key in keys] for record in records]
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "|".join("---" + "-" * len(header) for header in headers) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines.append("")
    return "\n".join(lines)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file.

    Parameters
    ----------
    path : str or Path
        The YAML file.

    Returns
    -------
    dict
        The parsed document (an empty dict for an empty file).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file not found: {path}")
    with path.open() as file:
        return yaml.safe_load(file) or {}
