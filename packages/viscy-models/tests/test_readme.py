"""The README's examples run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_an_example_per_model_family():
    code = "\n".join(BLOCKS)
    for name in ("UNeXt2", "FullyConvolutionalMAE", "Unet2d", "Unet25d", "BetaVae25D", "BetaVaeMonai"):
        assert f"{name}(" in code
    assert "ContrastiveEncoder(" in code
    assert "ResNet3dEncoder(" in code


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
@pytest.mark.usefixtures("restore_model_registry")
def test_readme_example_runs(code):
    exec(compile(code, str(README), "exec"), {})
