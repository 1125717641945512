import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from viscy_utils.evaluation.feature import CellFeatures, DynamicFeatures
from viscy_utils.evaluation.lca import (
    AssembledClassifier,
    fit_logistic_regression,
    linear_from_binary_logistic_regression,
)
from viscy_utils.evaluation.metrics import (
    POD_metric,
    VOI_metric,
    labels_to_detection,
    mean_average_precision,
    ms_ssim_25d,
    ssim_25d,
)


def _disks(centers, radius=4, shape=(48, 48)):
    y, x = np.indices(shape)
    labels = np.zeros(shape, dtype=np.int32)
    for i, (cy, cx) in enumerate(centers, start=1):
        labels[(y - cy) ** 2 + (x - cx) ** 2 <= radius**2] = i
    return labels


def test_voi_is_zero_for_identical_and_positive_otherwise():
    labels = _disks([(10, 10), (30, 30)])
    assert VOI_metric(labels, labels) == [pytest.approx(0.0)]
    assert VOI_metric(labels, np.zeros_like(labels))[0] > 0


def test_pod_metric_counts_matches():
    target = _disks([(10, 10), (30, 30), (10, 38)]) > 0
    prediction = _disks([(11, 10), (30, 31), (40, 5), (42, 42)]) > 0
    tp, fp, fn, precision, recall, f1 = POD_metric(target, prediction)
    assert (tp, fp, fn) == (2, 2, 1)
    assert precision == pytest.approx(0.5)
    assert recall == pytest.approx(2 / 3)
    assert f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_labels_to_detection_boxes():
    labels = torch.zeros(10, 10, dtype=torch.int64)
    labels[2:5, 3:7] = 4
    detection = labels_to_detection(labels)
    assert detection["boxes"].tolist() == [[3.0, 2.0, 7.0, 5.0]]
    assert detection["masks"].shape == (1, 10, 10)


def test_mean_average_precision_perfect_and_empty_prediction():
    labels = torch.as_tensor(_disks([(10, 10), (30, 30)]))
    assert mean_average_precision(labels, labels)["map"].item() == pytest.approx(1.0)
    shifted = torch.as_tensor(_disks([(10, 30), (40, 8)]))
    assert mean_average_precision(shifted, labels)["map"].item() == pytest.approx(0.0)


def test_ssim_25d_identical_and_noisy():
    rng = torch.Generator().manual_seed(0)
    target = torch.rand(2, 1, 3, 32, 32, generator=rng)
    assert ssim_25d(target, target).item() == pytest.approx(1.0)
    noisy = target + 0.5 * torch.rand(target.shape, generator=rng)
    ssim, contrast = ssim_25d(noisy, target, return_contrast_sensitivity=True)
    assert ssim.item() < 0.9
    assert 0 < contrast.item() <= 1
    with pytest.raises(ValueError, match="B, C, Z, Y, X"):
        ssim_25d(target[0], target[0])


def test_ms_ssim_25d():
    target = torch.rand(1, 1, 2, 96, 96, generator=torch.Generator().manual_seed(1))
    assert ms_ssim_25d(target, target, in_plane_window_size=(5, 5)).item() == pytest.approx(1.0)
    worse = ms_ssim_25d(torch.rand_like(target), target, in_plane_window_size=(5, 5), clamp=True).item()
    assert 0 <= worse < 0.9


def test_cell_features_known_values():
    image = np.zeros((64, 64))
    image[24:40, 24:40] = 10.0
    mask = image > 0
    df = CellFeatures(image, mask).compute_all_features()
    assert len(df) == 1
    row = df.iloc[0]
    assert row["max_intensity"] == 10.0
    assert row["area"] == 256.0
    assert row["masked_intensity"] == pytest.approx(10.0)
    assert row["intensity_localization"] == pytest.approx(1.0)
    assert row["eccentricity"] == pytest.approx(0.0, abs=1e-6)
    assert row["radial_intensity_gradient"] < 0  # bright center, dark rim
    assert {"contrast", "homogeneity", "entropy", "texture", "zernike_mean", "spectral_entropy"} <= set(df.columns)
    with pytest.raises(ValueError, match="non-empty segmentation_mask"):
        CellFeatures(image).compute_morphology_features()


def test_dynamic_features_of_a_straight_track():
    tracks = pd.DataFrame({"track_id": [1] * 4, "t": [3, 0, 1, 2], "x": [9.0, 0.0, 3.0, 6.0], "y": [12.0, 0, 4, 8]})
    features = DynamicFeatures(tracks).compute_all_features(1)
    assert features["instantaneous_velocity"] == pytest.approx([5.0, 5.0, 5.0])
    assert features["total_distance"] == pytest.approx(15.0)
    assert features["net_displacement"] == pytest.approx(15.0)
    assert features["directional_persistence"] == pytest.approx(1.0)
    assert features["mean_angular_velocity"] == pytest.approx(0.0)
    with pytest.raises(KeyError, match="columns present"):
        DynamicFeatures(tracks.drop(columns="x"))
    with pytest.raises(KeyError, match="Track 2"):
        DynamicFeatures(tracks).compute_all_features(2)


def test_fit_logistic_regression_scales_with_the_training_split():
    # regression: train and test were standardized by separately fitted scalers
    xr = pytest.importorskip("xarray")
    rng = np.random.default_rng(0)
    n = 120
    labels = np.tile(["background", "uninfected", "infected"], n // 3)
    features = rng.normal(size=(n, 4)) + (labels == "infected")[:, None] * 4
    fovs = np.repeat([f"A/1/{i}" for i in range(6)], n // 6)
    data = xr.DataArray(features, dims=("sample", "feature"), coords={"fov_name": ("sample", fovs)})
    annotations = pd.Series(pd.Categorical(labels, categories=["background", "uninfected", "infected"]))
    model, ((x_train, y_train), (x_test, y_test)) = fit_logistic_regression(
        data, annotations, train_fovs=["A/1/0", "A/1/1", "A/1/2", "A/1/3"], scale_features=True, random_state=0
    )
    assert set(np.unique(y_train)) == {0, 1}  # background dropped, codes shifted
    np.testing.assert_allclose(x_train.mean(axis=0), 0, atol=1e-12)
    assert np.abs(x_test.mean(axis=0)).max() > 1e-3  # test data is not re-centered on itself
    assert model.score(x_test, y_test) > 0.95
    linear = linear_from_binary_logistic_regression(model)
    with torch.no_grad():
        logits = linear(torch.as_tensor(x_test, dtype=torch.float32)).squeeze(1).numpy()
    np.testing.assert_allclose(logits, model.decision_function(x_test), rtol=1e-4, atol=1e-4)


def test_assembled_classifier_and_attributions():
    backbone = nn.Module()
    backbone.stem = nn.Conv3d(1, 2, kernel_size=(1, 4, 4), stride=(1, 4, 4))
    backbone.encoder = nn.Sequential(nn.Flatten(), nn.Linear(2 * 1 * 4 * 4, 8))
    model = AssembledClassifier(backbone, nn.Linear(8, 1)).eval()
    x = torch.rand(2, 1, 1, 16, 16)
    assert model(x).shape == (2, 1)
    attribution = model.attribute_integrated_gradients(x, n_steps=4)
    assert attribution.shape == x.shape
    occlusion = model.attribute_occlusion(x, sliding_window_shapes=(1, 1, 4, 4), strides=(1, 1, 4, 4))
    assert occlusion.shape == x.shape
    with pytest.raises(TypeError, match="stem"):
        AssembledClassifier(nn.Linear(1, 1), nn.Linear(1, 1))
