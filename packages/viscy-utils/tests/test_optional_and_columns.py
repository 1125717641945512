"""One implementation of the optional-import hints and of the missing-column error, shared with viscy-data."""

import pandas as pd
import pytest

from viscy_data._utils import MissingColumnsError, _require_columns
from viscy_utils._optional import import_optional, require_installed
from viscy_utils.evaluation._embeddings import require_columns


def test_missing_columns_is_one_error_for_keyerror_and_valueerror_callers():
    """viscy-data's and viscy-utils' column checks raise one type, caught as KeyError or as ValueError."""
    with pytest.raises(MissingColumnsError) as from_utils:
        require_columns(pd.DataFrame({"t": [0]}), ["t", "fov_name"])
    with pytest.raises(MissingColumnsError) as from_data:
        _require_columns(["t"], ["t", "fov_name"], "The embeddings")
    assert str(from_utils.value) == str(from_data.value)
    assert str(from_utils.value) == "The embeddings lacks columns ['fov_name']; columns present: ['t']."
    assert isinstance(from_utils.value, KeyError)
    assert isinstance(from_utils.value, ValueError)


def test_optional_imports_name_the_viscy_utils_extra():
    """viscy-utils' hints use viscy-data's implementation with the viscy-utils distribution."""
    assert import_optional("json", extra="eval").__name__ == "json"
    with pytest.raises(ImportError) as imported:
        import_optional("no_such_module_xyz.sub", extra="eval", feature="PHATE")
    assert str(imported.value) == (
        "no_such_module_xyz is required for PHATE; it comes with the 'eval' extra: pip install 'viscy-utils[eval]'"
    )
    with pytest.raises(ImportError, match=r"no_such_module_xyz is not installed; .* pip install 'viscy-utils\[viz\]'"):
        require_installed("no_such_module_xyz", extra="viz")
