import pytest

from viscy_data.ome_compat import fov_name, open_ome_zarr
from viscy_data.select import SelectWell


class Selector(SelectWell):
    def __init__(self, include_wells=None, exclude_fovs=None):
        self._include_wells = include_wells
        self._exclude_fovs = exclude_fovs


@pytest.fixture(scope="module")
def plate(synthetic_plate):
    with open_ome_zarr(synthetic_plate.store_path, layout="hcs") as plate:
        yield plate


@pytest.mark.parametrize("include_wells", [None, ["A/1", "B/2"]])
@pytest.mark.parametrize("exclude_fovs", [None, ["A/1/0", "A/2/1"]])
def test_filter_fit_fovs(plate, include_wells, exclude_fovs):
    names = [fov_name(p) for p in Selector(include_wells, exclude_fovs)._filter_fit_fovs(plate)]
    wells = include_wells or ["A/1", "A/2", "B/1", "B/2"]
    expected = [f"{w}/{f}" for w in wells for f in (0, 1) if f"{w}/{f}" not in (exclude_fovs or [])]
    assert sorted(names) == sorted(expected)


def test_unknown_well_lists_plate_wells(plate):
    with pytest.raises(
        ValueError, match=r"unknown wells \['C/3'\]; the plate has wells \['A/1', 'A/2', 'B/1', 'B/2'\]"
    ):
        Selector(["A/1", "C/3"])._filter_fit_fovs(plate)


def test_empty_well_selection(plate):
    with pytest.raises(ValueError, match="empty well selection"):
        Selector([])._filter_fit_fovs(plate)


def test_too_few_fovs(plate):
    with pytest.raises(ValueError, match="At least 2 FOVs are required"):
        Selector(["A/1"], ["A/1/0"])._filter_fit_fovs(plate)


def test_unknown_excluded_fov_warns(plate, caplog):
    names = [fov_name(p) for p in Selector(["A/1"], ["A/1/9"])._filter_fit_fovs(plate)]
    assert names == ["A/1/0", "A/1/1"]
    assert "A/1/9" in caplog.text
