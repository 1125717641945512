"""The package uses only public names of its dependencies (timm, torch, monai have no upper bound here)."""

import ast
from pathlib import Path

import viscy_models

SOURCE_ROOT = Path(viscy_models.__file__).parent


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_third_party_uses(source: str) -> list[str]:
    """Every private name of another package that ``source`` imports, or reads from an imported name."""
    tree = ast.parse(source)
    found = []
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not alias.name.startswith("viscy_models"):
                    imported.add(alias.asname or alias.name.split(".")[0])
                    if any(_is_private(part) for part in alias.name.split(".")):
                        found.append(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and not node.module.startswith("viscy_models"):
            imported.update(alias.asname or alias.name for alias in node.names)
            if any(_is_private(part) for part in node.module.split(".")):
                found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names if _is_private(alias.name)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in imported:
                found.append(ast.unparse(node))
    return found


def test_the_checker_finds_private_imports_and_attributes():
    source = (
        "import torch\n"
        "from timm.models.convnext import ConvNeXtStage, _init_weights\n"
        "from timm.models._builder import build_model_with_cfg\n"
        "ok = torch.nn.Module\n"
        "bad = torch._dynamo.eval_frame.OptimizedModule\n"
        "def f(self):\n"
        "    return self._private, ConvNeXtStage.__name__\n"
    )
    assert _private_third_party_uses(source) == [
        "timm.models.convnext._init_weights",
        "timm.models._builder",
        "torch._dynamo",
    ]


def test_no_module_uses_private_names_of_other_packages():
    offenders = {
        str(path.relative_to(SOURCE_ROOT)): uses
        for path in sorted(SOURCE_ROOT.rglob("*.py"))
        if (uses := _private_third_party_uses(path.read_text()))
    }
    assert offenders == {}
