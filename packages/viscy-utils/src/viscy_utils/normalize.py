"""Intensity normalization of images: z-score, its inverse, percentile clipping and CLAHE."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from viscy_utils._optional import import_optional

__all__ = ["hist_adapteq_2D", "hist_clipping", "unzscore", "zscore"]

FLOAT_EPS = float(np.finfo(np.float32).eps)
"""Added to divisors so that constant images do not divide by zero."""


def zscore(img: np.ndarray, im_mean: float | None = None, im_std: float | None = None) -> np.ndarray:
    """Z-score an image: ``(img - mean) / (std + eps)``.

    Parameters
    ----------
    img : np.ndarray
        Image of any shape.
    im_mean : float, optional
        Mean to subtract; the NaN-aware mean of ``img`` when None. ``0`` is a valid mean.
    im_std : float, optional
        Standard deviation to divide by; the NaN-aware std of ``img`` when None. ``0`` is a
        valid std (the result is then ``(img - mean) / eps``).

    Returns
    -------
    np.ndarray
        The normalized image.
    """
    if im_mean is None:
        im_mean = np.nanmean(img)
    if im_std is None:
        im_std = np.nanstd(img)
    return (img - im_mean) / (im_std + FLOAT_EPS)


def unzscore(im_norm: np.ndarray, zscore_median: float, zscore_iqr: float) -> np.ndarray:
    """Revert a median/IQR normalization: ``im_norm * (iqr + eps) + median``.

    Parameters
    ----------
    im_norm : np.ndarray
        Normalized image.
    zscore_median : float
        The median that was subtracted.
    zscore_iqr : float
        The interquartile range that was divided by.

    Returns
    -------
    np.ndarray
        The image in its original intensity scale.
    """
    return im_norm * (zscore_iqr + FLOAT_EPS) + zscore_median


def hist_clipping(
    img: np.ndarray, min_percentile: float = 2, max_percentile: float = 98, rescale: bool = True
) -> np.ndarray:
    """Clip an image to intensity percentiles and rescale it to ``[0, 1]``.

    Parameters
    ----------
    img : np.ndarray
        Image of any shape.
    min_percentile : float
        Lower percentile, in ``[0, max_percentile)``.
    max_percentile : float
        Upper percentile, in ``(min_percentile, 100]``.
    rescale : bool
        Map the clipped range linearly onto ``[0, 1]`` (a constant image maps to 0).
        With False the clipped intensities are returned unchanged.

    Returns
    -------
    np.ndarray
        The clipped (and rescaled) image as floats.

    Raises
    ------
    ValueError
        If the percentiles are not ordered within ``[0, 100]``.
    """
    if not 0 <= min_percentile < max_percentile <= 100:
        raise ValueError(
            f"Percentiles must satisfy 0 <= min_percentile < max_percentile <= 100, "
            f"got min_percentile={min_percentile}, max_percentile={max_percentile}."
        )
    low, high = np.nanpercentile(img, (min_percentile, max_percentile))
    clipped = np.clip(np.asarray(img, dtype=np.float64), low, high)
    if not rescale:
        return clipped
    return (clipped - low) / max(high - low, FLOAT_EPS)


def hist_adapteq_2D(
    img: np.ndarray, kernel_size: int | Sequence[int] | None = None, clip_limit: float | None = None
) -> np.ndarray:
    """Contrast-limited adaptive histogram equalization (CLAHE) of a 2-D image.

    Needs scikit-image (``pip install 'viscy-utils[eval]'``).

    Parameters
    ----------
    img : np.ndarray
        Image of shape ``(Y, X)``.
    kernel_size : int or sequence of int, optional
        Size of the contextual regions: an int smaller than both image sides, or one size per
        image dimension. Defaults to 1/8 of each side.
    clip_limit : float, optional
        Contrast clip limit in ``[0, 1]``; scikit-image's default (0.01) when None.

    Returns
    -------
    np.ndarray
        The equalized image, as floats in ``[0, 1]``.

    Raises
    ------
    ValueError
        If ``kernel_size`` or ``clip_limit`` is out of range.
    """
    exposure = import_optional("skimage.exposure", extra="eval")
    if kernel_size is not None:
        if isinstance(kernel_size, int):
            if kernel_size >= min(img.shape):
                raise ValueError(f"kernel_size={kernel_size} must be smaller than the image sides {img.shape}.")
        elif isinstance(kernel_size, list | tuple):
            if len(kernel_size) != img.ndim:
                raise ValueError(
                    f"kernel_size={kernel_size} needs one entry per image dimension ({img.ndim}, shape {img.shape})."
                )
        else:
            raise ValueError(f"kernel_size must be an int, a list or a tuple, got {kernel_size!r}.")
    if clip_limit is None:
        return exposure.equalize_adapthist(img, kernel_size=kernel_size)
    if not 0 <= clip_limit <= 1:
        raise ValueError(f"clip_limit must lie in [0, 1], got {clip_limit}.")
    return exposure.equalize_adapthist(img, kernel_size=kernel_size, clip_limit=clip_limit)
