import subprocess
import sys
import textwrap

import pytest

# pydantic and xarray are not hidden: iohub, a base dependency, needs them
EXTRA_MODULES = [
    "anndata",
    "sklearn",
    "umap",
    "phate",
    "skimage",
    "mahotas",
    "captum",
    "pycocotools",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "dash",
    "plotly",
    "wandb",
]

SCRIPT = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    for name in sys.argv[1].split(","):
        sys.modules[name] = None  # hidden: importing it fails, find_spec() returns None
    import viscy_utils
    needs_extra = []
    for module in pkgutil.walk_packages(viscy_utils.__path__, "viscy_utils."):
        try:
            importlib.import_module(module.name)
        except ImportError as error:
            assert "pip install 'viscy-utils[" in str(error), (module.name, error)
            needs_extra.append(module.name)
    print("NEEDS_EXTRA", sorted(needs_extra))
    from viscy_utils.callbacks import EmbeddingWriter
    try:
        EmbeddingWriter("out.zarr")
    except ImportError as error:
        print("WRITER", error)
    from viscy_utils.cli import run_cli
    print("CLI_OK")
    """
)


@pytest.mark.slow
def test_base_install_imports_and_names_missing_extras(tmp_path):
    """With every extra hidden, modules import (or name their extra) and the CLI loads."""
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(EXTRA_MODULES)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "NEEDS_EXTRA []" in result.stdout
    assert "WRITER anndata is not installed" in result.stdout
    assert "pip install 'viscy-utils[anndata]'" in result.stdout
    assert "CLI_OK" in result.stdout
