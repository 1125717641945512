"""The transforms' copies of viscy-data's types stay equal to viscy-data's (the source of truth)."""

import ast
from pathlib import Path

import pytest

TRANSFORMS_TYPING = Path(__file__).resolve().parents[1] / "src" / "viscy_transforms" / "_typing.py"
DATA_TYPING = Path(__file__).resolve().parents[2] / "viscy-data" / "src" / "viscy_data" / "_typing.py"


def _definitions(path: Path) -> dict[str, str]:
    """Each top-level class and alias of a module, as source text without docstrings."""
    tree = ast.parse(path.read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            node.body = [
                item for item in node.body if not (isinstance(item, ast.Expr) and isinstance(item.value, ast.Constant))
            ]
            found[node.name] = ast.unparse(node)
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = ast.unparse(node)
    return found


@pytest.mark.skipif(not DATA_TYPING.is_file(), reason="needs the workspace source tree (viscy-data beside)")
def test_every_copied_type_equals_viscy_data():
    ours, theirs = _definitions(TRANSFORMS_TYPING), _definitions(DATA_TYPING)
    assert {"LevelNormStats", "ChannelNormStats", "NormMeta", "HCSStackIndex", "Sample", "OneOrSeq"} <= set(ours)
    for name, source in ours.items():
        assert name in theirs, f"{name} is not defined in viscy_data._typing"
        assert source == theirs[name], f"{name} differs from viscy_data._typing"
