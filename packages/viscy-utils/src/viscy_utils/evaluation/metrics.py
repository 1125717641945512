"""Segmentation, detection and image-similarity metrics (``pip install 'viscy-utils[eval]'``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from viscy_utils._optional import import_optional

__all__ = [
    "POD_metric",
    "VOI_metric",
    "labels_to_detection",
    "labels_to_masks",
    "mean_average_precision",
    "ms_ssim_25d",
    "ssim_25d",
]


def VOI_metric(target: np.ndarray, prediction: np.ndarray) -> list[float]:
    """Variation of information between two label images (0 = identical segmentations).

    Parameters
    ----------
    target, prediction : np.ndarray
        Integer label images of the same shape.

    Returns
    -------
    list of float
        ``[VI]``, the sum of the two conditional entropies.
    """
    metrics = import_optional("skimage.metrics", extra="eval")
    split, merge = metrics.variation_of_information(np.asarray(target), np.asarray(prediction))
    return [float(split + merge)]


def POD_metric(target_bin: np.ndarray, pred_bin: np.ndarray) -> list[float]:
    """Object-detection scores of a binary segmentation.

    Connected objects are matched one-to-one by centroid distance (Hungarian assignment); a
    match counts when the centroids are closer than half the targets' mean major-axis length.

    Parameters
    ----------
    target_bin, pred_bin : np.ndarray
        Binary 2-D masks.

    Returns
    -------
    list of float
        ``[TP, FP, FN, precision, recall, f1]``.
    """
    measure = import_optional("skimage.measure", extra="eval")
    optimize = import_optional("scipy.optimize", extra="eval")
    targets = measure.regionprops(measure.label(np.asarray(target_bin) > 0))
    predictions = measure.regionprops(measure.label(np.asarray(pred_bin) > 0))
    true_positives = 0
    if targets and predictions:
        threshold = np.mean([region.axis_major_length for region in targets]) / 2
        target_centroids = np.array([region.centroid for region in targets])
        pred_centroids = np.array([region.centroid for region in predictions])
        distances = np.linalg.norm(target_centroids[:, None] - pred_centroids[None], axis=-1)
        rows, cols = optimize.linear_sum_assignment(distances)
        true_positives = int(np.sum(distances[rows, cols] < threshold))
    false_positives = len(predictions) - true_positives
    false_negatives = len(targets) - true_positives
    precision = true_positives / max(len(predictions), 1)
    recall = true_positives / max(len(targets), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return [float(true_positives), float(false_positives), float(false_negatives), precision, recall, f1]


def labels_to_masks(labels: torch.Tensor) -> torch.Tensor:
    """One boolean mask per nonzero label: ``(Y, X)`` labels give ``(N, Y, X)``."""
    labels = torch.as_tensor(labels)
    ids = labels.unique()
    ids = ids[ids != 0]
    return labels[None] == ids[:, None, None]


def labels_to_detection(labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Convert a label image to detections in torchmetrics' format.

    Returns
    -------
    dict
        ``boxes`` ``(N, 4)`` in xyxy pixels, ``labels`` (all 0), ``scores`` (all 1) and
        ``masks`` ``(N, Y, X)``.
    """
    masks = labels_to_masks(labels)
    boxes = torch.zeros((len(masks), 4), dtype=torch.float32)
    for i, mask in enumerate(masks):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        boxes[i] = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
    count = len(masks)
    return {
        "boxes": boxes,
        "labels": torch.zeros(count, dtype=torch.int64),
        "scores": torch.ones(count),
        "masks": masks,
    }


def mean_average_precision(pred_labels: torch.Tensor, target_labels: torch.Tensor, **kwargs: Any) -> dict:
    """COCO mean average precision of instance masks (torchmetrics ``MeanAveragePrecision``).

    Parameters
    ----------
    pred_labels, target_labels : torch.Tensor
        ``(Y, X)`` label images.
    **kwargs
        Passed to ``MeanAveragePrecision``.

    Returns
    -------
    dict
        torchmetrics' results (``map``, ``map_50``, ``mar_100``...).
    """
    detection = import_optional("torchmetrics.detection", extra="eval")
    metric = detection.MeanAveragePrecision(
        iou_type="segm", box_format="xyxy", max_detection_thresholds=[1, 100, 10000], **kwargs
    )
    metric.update([labels_to_detection(pred_labels)], [labels_to_detection(target_labels)])
    return metric.compute()


def _check_5d(preds: torch.Tensor, target: torch.Tensor) -> None:
    if preds.ndim != 5 or preds.shape != target.shape:
        raise ValueError(
            f"Expected two (B, C, Z, Y, X) tensors of the same shape, got {tuple(preds.shape)} and "
            f"{tuple(target.shape)}."
        )


def _ssim_and_contrast(
    preds: torch.Tensor, target: torch.Tensor, window: tuple[int, int], data_range: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and contrast-sensitivity with a uniform window spanning the full depth."""
    kernel = (preds.shape[2], *window)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2

    def mean(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(x, kernel_size=kernel, stride=1)

    mu_p, mu_t = mean(preds), mean(target)
    var_p = mean(preds * preds) - mu_p**2
    var_t = mean(target * target) - mu_t**2
    covariance = mean(preds * target) - mu_p * mu_t
    contrast = (2 * covariance + c2) / (var_p + var_t + c2)
    ssim = (2 * mu_p * mu_t + c1) / (mu_p**2 + mu_t**2 + c1) * contrast
    return ssim.mean(), contrast.mean()


def ssim_25d(
    preds: torch.Tensor,
    target: torch.Tensor,
    in_plane_window_size: tuple[int, int] = (11, 11),
    return_contrast_sensitivity: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Structural similarity of 2.5-D stacks: a uniform window over the whole depth and a YX patch.

    Parameters
    ----------
    preds, target : torch.Tensor
        ``(B, C, Z, Y, X)`` tensors; the data range is ``target.max()``.
    in_plane_window_size : tuple of int
        Window size in Y and X.
    return_contrast_sensitivity : bool
        Also return the mean contrast-sensitivity term.

    Returns
    -------
    Tensor or tuple of Tensor
        Mean SSIM (and contrast sensitivity).
    """
    _check_5d(preds, target)
    preds, target = preds.double(), target.double()
    ssim, contrast = _ssim_and_contrast(preds, target, tuple(in_plane_window_size), target.max())
    return (ssim, contrast) if return_contrast_sensitivity else ssim


def ms_ssim_25d(
    preds: torch.Tensor,
    target: torch.Tensor,
    in_plane_window_size: tuple[int, int] = (11, 11),
    clamp: bool = False,
    betas: Sequence[float] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),
) -> torch.Tensor:
    """Multi-scale 2.5-D SSIM: images are halved in Y and X between scales.

    Parameters
    ----------
    preds, target : torch.Tensor
        ``(B, C, Z, Y, X)`` tensors, large enough in Y and X for ``len(betas)`` scales.
    in_plane_window_size : tuple of int
        Window size in Y and X.
    clamp : bool
        Clamp negative per-scale terms to 0 (avoids NaN powers).
    betas : sequence of float
        Weight of each scale.

    Returns
    -------
    Tensor
        ``prod(cs_i ** beta_i for i < last) * ssim_last ** beta_last``.
    """
    _check_5d(preds, target)
    preds, target = preds.double(), target.double()
    data_range = target.max()
    terms = []
    for scale, beta in enumerate(betas):
        ssim, contrast = _ssim_and_contrast(preds, target, tuple(in_plane_window_size), data_range)
        term = ssim if scale == len(betas) - 1 else contrast
        terms.append((term.clamp(min=0) if clamp else term) ** beta)
        if scale < len(betas) - 1:
            preds = F.avg_pool3d(preds, kernel_size=(1, 2, 2))
            target = F.avg_pool3d(target, kernel_size=(1, 2, 2))
    return torch.stack(terms).prod()
