import subprocess
import sys
import textwrap

import pytest

import viscy_data

EXPECTED_EXPORTS = 47


def test_flat_exports():
    assert len(viscy_data.__all__) == EXPECTED_EXPORTS
    assert len(set(viscy_data.__all__)) == EXPECTED_EXPORTS
    for name in viscy_data.__all__:
        assert getattr(viscy_data, name) is not None
        assert name in dir(viscy_data)
    assert viscy_data.TripletDataModule.__module__ == "viscy_data.triplet"


_BASE_INSTALL = textwrap.dedent(
    """
    import importlib, importlib.abc, sys

    # tifffile of the [livecell] extra is also an iohub dependency, so a base install has it
    HIDDEN = {"tensorstore", "tensordict", "pycocotools", "torchvision"}

    class HideExtras(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HIDDEN:
                raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)
            return None

    sys.meta_path.insert(0, HideExtras())

    import importlib.metadata as metadata  # hide their distributions too, as if never installed

    def _hiding(lookup):
        def hidden_lookup(name):
            if name.lower() in HIDDEN:
                raise metadata.PackageNotFoundError(name)
            return lookup(name)
        return hidden_lookup

    metadata.version = _hiding(metadata.version)
    metadata.distribution = _hiding(metadata.distribution)

    import viscy_data
    from viscy_data import *  # every export resolves without any extra
    for module in ["_typing", "_utils", "select", "distributed", "plate", "hcs", "gpu_aug", "mmap_cache", "triplet",
                   "ctmc_v1", "livecell", "cell_classification", "cell_division_triplet", "segmentation",
                   "combined", "synthetic", "normalization", "sampler", "channel_dropout"]:
        importlib.import_module(f"viscy_data.{module}")
    assert "viscy_transforms" not in sys.modules
    assert not HIDDEN & set(sys.modules)

    from viscy_data import LiveCellDataset, MmappedDataModule, MmappedDataset, TripletDataModule, TripletDataset

    calls = {
        "triplet": [lambda: TripletDataset([], [], [], (8, 8), slice(0, 1)),
                    lambda: TripletDataModule("plate.zarr", "tracks", "GFP", (0, 1))],
        "mmap": [lambda: MmappedDataset([], [], {}, None),
                 lambda: MmappedDataModule("plate.zarr", "GFP", 1, 0, 0.5, [], [], [], [], [])],
        "livecell": [lambda: LiveCellDataset([], None, {})],
    }
    for extra, constructors in calls.items():
        for construct in constructors:
            try:
                construct()
            except ImportError as error:
                print(f"{extra}|{error}")
            else:
                raise AssertionError(f"{extra} feature built without its extra")
    """
)


@pytest.mark.slow
def test_base_install_imports_and_names_extras():
    result = subprocess.run([sys.executable, "-c", _BASE_INSTALL], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    messages = [line.split("|", 1) for line in result.stdout.splitlines() if "|" in line]
    assert len(messages) == 5
    for extra, message in messages:
        assert f"pip install 'viscy-data[{extra}]'" in message
    livecell = next(message for extra, message in messages if extra == "livecell")
    assert "pycocotools, torchvision are required for LiveCellDataset" in livecell
    triplet = next(message for extra, message in messages if extra == "triplet")
    assert triplet.startswith("tensorstore is required for TripletDataset")
