import numpy as np
import pytest

from viscy_utils import hist_clipping, unzscore, zscore
from viscy_utils.normalize import hist_adapteq_2D


def test_zscore_defaults_to_image_statistics():
    img = np.random.default_rng(0).normal(5, 3, size=(64, 64))
    out = zscore(img)
    assert abs(out.mean()) < 1e-6
    assert abs(out.std() - 1) < 1e-4


def test_zscore_given_statistics():
    np.testing.assert_allclose(zscore(np.array([10.0, 20.0, 30.0]), 20, 10), [-1, 0, 1], atol=1e-6)


def test_zscore_zero_mean_is_used_not_replaced():
    # regression: the reference treated 0 as "not given" and used the image mean instead
    img = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(zscore(img, im_mean=0, im_std=1), img, rtol=1e-6)


def test_unzscore_round_trip():
    img = np.random.default_rng(1).gamma(2, 10, size=(32, 32))
    median = np.median(img)
    iqr = np.subtract(*np.percentile(img, [75, 25]))
    normalized = (img - median) / (iqr + np.finfo(np.float32).eps)
    np.testing.assert_allclose(unzscore(normalized, median, iqr), img, rtol=1e-6)


def test_hist_clipping_clips_and_rescales():
    # regression: the reference only clipped although its docstring promised a rescale
    img = np.random.default_rng(2).normal(size=(50, 50))
    low, high = np.percentile(img, [10, 90])
    out = hist_clipping(img, 10, 90)
    assert out.min() == pytest.approx(0)
    assert out.max() == pytest.approx(1)
    np.testing.assert_allclose(out, (np.clip(img, low, high) - low) / (high - low))
    clipped = hist_clipping(img, 10, 90, rescale=False)
    assert clipped.min() == pytest.approx(low)
    assert clipped.max() == pytest.approx(high)


def test_hist_clipping_rejects_bad_percentiles():
    with pytest.raises(ValueError, match="min_percentile=90"):
        hist_clipping(np.zeros(4), 90, 10)


def test_hist_adapteq_2d_validates_arguments():
    img = np.random.default_rng(3).random((32, 32))
    out = hist_adapteq_2D(img, kernel_size=8, clip_limit=0.02)
    assert out.shape == img.shape
    assert 0 <= out.min()
    assert out.max() <= 1
    with pytest.raises(ValueError, match="kernel_size=32"):
        hist_adapteq_2D(img, kernel_size=32)
    with pytest.raises(ValueError, match="one entry per image dimension"):
        hist_adapteq_2D(img, kernel_size=[8, 8, 8])
    with pytest.raises(ValueError, match="clip_limit"):
        hist_adapteq_2D(img, clip_limit=2)
