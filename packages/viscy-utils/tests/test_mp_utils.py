import numpy as np

from viscy_data.normalization import compute_statistics, write_meta_field
from viscy_utils import get_val_stats, mp_wrapper
from viscy_utils.meta_utils import write_meta_field as meta_write_meta_field
from viscy_utils.mp_utils import mp_get_val_stats


def test_statistics_are_the_viscy_data_functions():
    assert get_val_stats is compute_statistics
    assert meta_write_meta_field is write_meta_field


def test_get_val_stats_values():
    values = np.random.default_rng(0).normal(size=1000)
    values[0] = np.nan
    stats = get_val_stats(values)
    assert stats["mean"] == np.nanmean(values)
    assert stats["median"] == np.nanmedian(values)
    assert stats["iqr"] >= 0
    assert {"std", "p5", "p95", "p1", "p99"} <= stats.keys()


def _add(a, b):
    return a + b


def test_mp_wrapper_keeps_order():
    assert mp_wrapper(_add, [(1, 2), (3, 4), (5, 6)], workers=2) == [3, 7, 11]


def test_mp_get_val_stats():
    arrays = [np.arange(10.0), np.arange(100.0)]
    stats = mp_get_val_stats(arrays, workers=2)
    assert [s["max"] for s in stats] == [9.0, 99.0]
