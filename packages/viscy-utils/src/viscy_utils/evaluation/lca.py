"""Linear classifier analysis: logistic regression on embeddings and attribution through the encoder.

Needs ``pip install 'viscy-utils[eval]'`` (scikit-learn; captum for attributions).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from viscy_utils._optional import import_optional
from viscy_utils.evaluation._embeddings import embedding_matrix, embedding_obs

__all__ = ["AssembledClassifier", "fit_logistic_regression", "linear_from_binary_logistic_regression"]

_logger = logging.getLogger(__name__)


def _features_and_fovs(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix and per-sample FOV names of an xarray DataArray/Dataset or AnnData."""
    if hasattr(features, "coords") and not hasattr(features, "data_vars"):  # DataArray
        return np.asarray(features.values), np.asarray(features["fov_name"].values).astype(str)
    return embedding_matrix(features), embedding_obs(features)["fov_name"].astype(str).to_numpy()


def fit_logistic_regression(
    features: Any,
    annotations: pd.Series,
    train_fovs: Sequence[str] | None = None,
    train_ratio: float = 0.8,
    remove_background_class: bool = True,
    scale_features: bool = False,
    class_weight: str | None = "balanced",
    random_state: int | None = None,
    solver: str = "liblinear",
) -> tuple[Any, tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]]:
    """Fit a logistic regression on embeddings, split by FOV.

    Labels are the category codes of ``annotations``; with ``remove_background_class``
    code 0 is dropped and the others shift down by one. Unless ``train_fovs`` is given, FOVs
    are split ``train_ratio``/rest, stratified by each FOV's majority class when possible.
    With ``scale_features`` one scaler is fitted on the training split and applied to both.

    Parameters
    ----------
    features : xarray.DataArray, xarray.Dataset or AnnData
        Embeddings with a ``fov_name`` per sample.
    annotations : pd.Series
        Categorical labels aligned with the samples.
    train_fovs : sequence of str, optional
        FOVs to train on; the others are the test set.
    train_ratio : float
        Fraction of FOVs used for training.
    remove_background_class : bool
        Drop code 0.
    scale_features : bool
        Standard-scale with statistics of the training split.
    class_weight, solver : str
        ``LogisticRegression`` settings.
    random_state : int, optional
        Seed of the FOV split and the classifier.

    Returns
    -------
    tuple
        The fitted model and ``((X_train, y_train), (X_test, y_test))``.
    """
    linear_model = import_optional("sklearn.linear_model", extra="eval")
    model_selection = import_optional("sklearn.model_selection", extra="eval")
    preprocessing = import_optional("sklearn.preprocessing", extra="eval")
    X, fovs = _features_and_fovs(features)
    codes = np.asarray(pd.Categorical(annotations).codes)
    if len(codes) != len(X):
        raise ValueError(f"{len(codes)} annotations for {len(X)} samples.")
    keep = codes >= 0
    if remove_background_class:
        keep &= codes != 0
        codes = codes - 1
    X, y, fovs = X[keep], codes[keep], fovs[keep]
    if train_fovs is None:
        unique_fovs = np.unique(fovs)
        majority = np.array([np.bincount(y[fovs == fov]).argmax() for fov in unique_fovs])
        stratify = majority if np.bincount(majority).min(initial=0) >= 2 and len(np.unique(majority)) > 1 else None
        train_fovs, _ = model_selection.train_test_split(
            unique_fovs, train_size=train_ratio, stratify=stratify, random_state=random_state
        )
    in_train = np.isin(fovs, np.asarray(train_fovs))
    X_train, y_train, X_test, y_test = X[in_train], y[in_train], X[~in_train], y[~in_train]
    if scale_features:
        scaler = preprocessing.StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    model = linear_model.LogisticRegression(class_weight=class_weight, random_state=random_state, solver=solver)
    model.fit(X_train, y_train)
    _logger.info("Trained on %d samples of %d FOVs; %d test samples", len(y_train), len(set(train_fovs)), len(y_test))
    return model, ((X_train, y_train), (X_test, y_test))


def linear_from_binary_logistic_regression(logistic_regression: Any) -> nn.Linear:
    """Return the decision function of a fitted binary logistic regression as ``nn.Linear(in, 1)``."""
    coef = np.asarray(logistic_regression.coef_)
    if coef.shape[0] != 1:
        raise ValueError(f"Expected a binary classifier with one coefficient row, got {coef.shape[0]}.")
    linear = nn.Linear(coef.shape[1], 1)
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
        linear.bias.copy_(torch.as_tensor(logistic_regression.intercept_, dtype=torch.float32))
    return linear


class AssembledClassifier(nn.Module):
    """A contrastive encoder's backbone (``stem`` then ``encoder``) followed by a linear classifier.

    Parameters
    ----------
    backbone : nn.Module
        Encoder with ``stem`` and ``encoder`` submodules (e.g. viscy-models'
        ``ContrastiveEncoder``); the projection head is not used.
    classifier : nn.Linear
        Classifier on the backbone features.
    """

    def __init__(self, backbone: nn.Module, classifier: nn.Linear) -> None:
        super().__init__()
        for name in ("stem", "encoder"):
            if not hasattr(backbone, name):
                raise TypeError(f"backbone needs a {name!r} submodule (like ContrastiveEncoder).")
        self.backbone = backbone
        self.classifier = classifier

    @staticmethod
    def scale_features(x: torch.Tensor) -> torch.Tensor:
        """Standardize features over the batch."""
        return (x - x.mean(dim=0, keepdim=True)) / (x.std(dim=0, keepdim=True) + 1e-8)

    def forward(self, x: torch.Tensor, scale_features: bool = False) -> torch.Tensor:
        """Logits of ``(B, C, Z, Y, X)`` images."""
        features = self.backbone.encoder(self.backbone.stem(x))
        if scale_features:
            features = self.scale_features(features)
        return self.classifier(features)

    def attribute_integrated_gradients(self, img: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Integrated-gradients attribution of the logit to the input (captum)."""
        attr = import_optional("captum.attr", extra="eval")
        return attr.IntegratedGradients(self).attribute(img, **kwargs)

    def attribute_occlusion(self, img: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Occlusion attribution of the logit to the input (captum)."""
        attr = import_optional("captum.attr", extra="eval")
        return attr.Occlusion(self).attribute(img, **kwargs)
