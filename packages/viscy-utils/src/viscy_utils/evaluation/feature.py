"""Hand-crafted features of single-cell patches and of cell tracks (``pip install 'viscy-utils[eval]'``)."""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
import pandas as pd

from viscy_utils._optional import import_optional
from viscy_utils.evaluation._embeddings import require_columns

__all__ = [
    "CellFeatures",
    "DynamicFeatures",
    "IntensityFeatures",
    "MorphologyFeatures",
    "SymmetryDescriptor",
    "TextureFeatures",
]


class IntensityFeatures(TypedDict):
    """Intensity statistics of a patch."""

    mean_intensity: float
    std_dev: float
    min_intensity: float
    max_intensity: float
    kurtosis: float
    skewness: float
    spectral_entropy: float
    iqr: float
    weighted_intensity_gradient: float


class TextureFeatures(TypedDict):
    """Texture statistics (gray-level co-occurrence, Haralick)."""

    spectral_entropy: float
    contrast: float
    entropy: float
    homogeneity: float
    dissimilarity: float
    texture: float


class MorphologyFeatures(TypedDict):
    """Shape of the segmented cell."""

    area: float
    perimeter: float
    perimeter_area_ratio: float
    eccentricity: float
    intensity_localization: float
    masked_intensity: float
    masked_area: float


class SymmetryDescriptor(TypedDict):
    """Rotational symmetry and radial profile."""

    zernike_std: float
    zernike_mean: float
    radial_intensity_gradient: float


def _spectral_entropy(image: np.ndarray) -> float:
    """Shannon entropy (bits) of the normalized 2-D power spectrum."""
    power = np.abs(np.fft.fft2(image)) ** 2
    total = power.sum()
    if total == 0:
        return 0.0
    p = power.ravel() / total
    p = p[p > 0]
    return float(-np.sum(p * np.log2(p)))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros(image.shape, dtype=np.uint8)
    return ((image - low) / (high - low) * 255).round().astype(np.uint8)


class CellFeatures:
    """Intensity, texture, morphology and symmetry features of one 2-D cell patch.

    Parameters
    ----------
    image : np.ndarray
        ``(Y, X)`` patch centered on the cell.
    segmentation_mask : np.ndarray, optional
        ``(Y, X)`` mask of the cell (nonzero inside); needed for morphology features.
    """

    def __init__(self, image: np.ndarray, segmentation_mask: np.ndarray | None = None) -> None:
        image = np.asarray(image, dtype=np.float64)
        if image.ndim != 2:
            raise ValueError(f"CellFeatures needs a 2-D (Y, X) image, got shape {image.shape}.")
        if segmentation_mask is not None and np.shape(segmentation_mask) != image.shape:
            raise ValueError(f"Mask shape {np.shape(segmentation_mask)} differs from image shape {image.shape}.")
        self.image = image
        self.segmentation_mask = None if segmentation_mask is None else np.asarray(segmentation_mask) > 0
        self.intensity_features: IntensityFeatures | None = None
        self.texture_features: TextureFeatures | None = None
        self.morphology_features: MorphologyFeatures | None = None
        self.symmetry_descriptor: SymmetryDescriptor | None = None

    def compute_intensity_features(self) -> IntensityFeatures:
        """Mean, spread, moments, spectral entropy and intensity-weighted gradient magnitude."""
        stats = import_optional("scipy.stats", extra="eval")
        image = self.image
        gradient = np.hypot(*np.gradient(image))
        total = image.sum()
        q75, q25 = np.percentile(image, [75, 25])
        self.intensity_features = IntensityFeatures(
            mean_intensity=float(image.mean()),
            std_dev=float(image.std()),
            min_intensity=float(image.min()),
            max_intensity=float(image.max()),
            kurtosis=float(stats.kurtosis(image, axis=None)),
            skewness=float(stats.skew(image, axis=None)),
            spectral_entropy=_spectral_entropy(image),
            iqr=float(q75 - q25),
            weighted_intensity_gradient=float((gradient * image).sum() / total) if total else 0.0,
        )
        return self.intensity_features

    def compute_texture_features(self) -> TextureFeatures:
        """GLCM contrast, entropy, homogeneity and dissimilarity (distance 1, 45 degrees) and Haralick texture."""
        feature = import_optional("skimage.feature", extra="eval")
        mahotas = import_optional("mahotas", extra="eval")
        image8 = _to_uint8(self.image)
        glcm = feature.graycomatrix(image8, distances=[1], angles=[np.pi / 4], levels=256, symmetric=True, normed=True)
        p = glcm[:, :, 0, 0]
        nonzero = p[p > 0]
        haralick = mahotas.features.haralick(image8, ignore_zeros=False)
        self.texture_features = TextureFeatures(
            spectral_entropy=_spectral_entropy(self.image),
            contrast=float(feature.graycoprops(glcm, "contrast")[0, 0]),
            entropy=float(-np.sum(nonzero * np.log2(nonzero))),
            homogeneity=float(feature.graycoprops(glcm, "homogeneity")[0, 0]),
            dissimilarity=float(feature.graycoprops(glcm, "dissimilarity")[0, 0]),
            texture=float(np.mean(np.ptp(haralick, axis=0))),
        )
        return self.texture_features

    def compute_morphology_features(self) -> MorphologyFeatures:
        """Area, perimeter, eccentricity and intensity inside the mask.

        Raises
        ------
        ValueError
            Without a mask, or with an empty one.
        """
        measure = import_optional("skimage.measure", extra="eval")
        if self.segmentation_mask is None or not self.segmentation_mask.any():
            raise ValueError("Morphology features need a non-empty segmentation_mask.")
        mask = self.segmentation_mask
        region = max(measure.regionprops(mask.astype(np.uint8)), key=lambda r: r.area)
        inside = self.image[mask]
        total = self.image.sum()
        self.morphology_features = MorphologyFeatures(
            area=float(region.area),
            perimeter=float(region.perimeter),
            perimeter_area_ratio=float(region.perimeter / region.area),
            eccentricity=float(region.eccentricity),
            intensity_localization=float(inside.sum() / total) if total else 0.0,
            masked_intensity=float(inside.mean()),
            masked_area=float(mask.sum()),
        )
        return self.morphology_features

    def compute_symmetry_descriptor(self) -> SymmetryDescriptor:
        """Zernike moments (radius 32) and the slope of the radial intensity profile."""
        mahotas = import_optional("mahotas", extra="eval")
        moments = mahotas.features.zernike_moments(self.image, radius=32)
        y, x = np.indices(self.image.shape)
        center_y, center_x = (np.asarray(self.image.shape) - 1) / 2
        radius = np.hypot(y - center_y, x - center_x).round().astype(int)
        profile = np.bincount(radius.ravel(), weights=self.image.ravel()) / np.maximum(np.bincount(radius.ravel()), 1)
        slope = float(np.polyfit(np.arange(len(profile)), profile, 1)[0]) if len(profile) > 1 else 0.0
        self.symmetry_descriptor = SymmetryDescriptor(
            zernike_std=float(np.std(moments)),
            zernike_mean=float(np.mean(moments)),
            radial_intensity_gradient=slope,
        )
        return self.symmetry_descriptor

    def compute_all_features(self) -> pd.DataFrame:
        """All feature groups (morphology only with a mask) as a one-row DataFrame."""
        self.compute_intensity_features()
        self.compute_texture_features()
        self.compute_symmetry_descriptor()
        if self.segmentation_mask is not None and self.segmentation_mask.any():
            self.compute_morphology_features()
        return self.to_df()

    def to_df(self) -> pd.DataFrame:
        """Return the features computed so far as a one-row DataFrame."""
        row: dict[str, Any] = {}
        for group in (
            self.intensity_features,
            self.texture_features,
            self.morphology_features,
            self.symmetry_descriptor,
        ):
            row.update(group or {})
        return pd.DataFrame([row])


class DynamicFeatures:
    """Motion features of cell tracks.

    Parameters
    ----------
    tracking_df : pd.DataFrame
        Tracks with ``track_id``, ``t``, ``x`` and ``y`` (numeric ``t``, ``x``, ``y``).

    Raises
    ------
    KeyError
        If a column is missing.
    ValueError
        If ``t``, ``x`` or ``y`` is not numeric.
    """

    def __init__(self, tracking_df: pd.DataFrame) -> None:
        require_columns(tracking_df, ["track_id", "t", "x", "y"], what="tracking table")
        for column in ("t", "x", "y"):
            if not pd.api.types.is_numeric_dtype(tracking_df[column]):
                raise ValueError(f"Column {column!r} must be numeric, got {tracking_df[column].dtype}.")
        self.tracking_df = tracking_df

    def _track(self, track_id: int) -> pd.DataFrame:
        track = self.tracking_df[self.tracking_df["track_id"] == track_id].sort_values("t")
        if track.empty:
            raise KeyError(
                f"Track {track_id} not found; tracks present: {sorted(self.tracking_df['track_id'].unique())}."
            )
        return track

    def compute_all_features(self, track_id: int) -> dict[str, Any]:
        """Velocity, displacement and angular-velocity statistics of one track (time-sorted).

        Returns
        -------
        dict
            ``instantaneous_velocity`` (list) and its ``mean_velocity``, ``max_velocity``,
            ``min_velocity`` and ``std_velocity``; ``total_distance``, ``net_displacement`` and
            ``directional_persistence`` (net / total); ``mean_angular_velocity``,
            ``max_angular_velocity`` and ``std_angular_velocity`` (radians per time unit).
        """
        track = self._track(track_id)
        t = track["t"].to_numpy(dtype=np.float64)
        xy = track[["x", "y"]].to_numpy(dtype=np.float64)
        steps = np.diff(xy, axis=0)
        dt = np.maximum(np.diff(t), np.finfo(np.float64).eps)
        step_lengths = np.linalg.norm(steps, axis=1)
        velocity = step_lengths / dt if len(dt) else np.zeros(0)
        total = float(step_lengths.sum())
        net = float(np.linalg.norm(xy[-1] - xy[0])) if len(xy) > 1 else 0.0
        angles = np.arctan2(steps[:, 1], steps[:, 0])
        turn = np.angle(np.exp(1j * np.diff(angles)))
        angular = np.abs(turn) / dt[1:] if len(turn) else np.zeros(0)

        def summary(values: np.ndarray, fn: Any) -> float:
            return float(fn(values)) if len(values) else 0.0

        return {
            "instantaneous_velocity": velocity.tolist(),
            "mean_velocity": summary(velocity, np.mean),
            "max_velocity": summary(velocity, np.max),
            "min_velocity": summary(velocity, np.min),
            "std_velocity": summary(velocity, np.std),
            "total_distance": total,
            "net_displacement": net,
            "directional_persistence": net / total if total > 0 else 0.0,
            "mean_angular_velocity": summary(angular, np.mean),
            "max_angular_velocity": summary(angular, np.max),
            "std_angular_velocity": summary(angular, np.std),
        }
