"""MONAI dictionary transforms re-declared with explicit constructor signatures.

MONAI constructors take ``**kwargs``, which jsonargparse (and so LightningCLI) cannot introspect.
Each class here subclasses the MONAI transform of the same name, spells out the arguments that
configs use and forwards everything else; behaviour is MONAI's, per sample.
"""

from collections.abc import Sequence
from typing import Any, ClassVar

from monai import transforms as monai_transforms
from numpy.typing import DTypeLike

from viscy_transforms._mapping import Keys
from viscy_transforms.kinds import TransformKind

__all__ = [
    "CenterSpatialCropd",
    "Decollated",
    "NormalizeIntensityd",
    "RandAdjustContrastd",
    "RandAffined",
    "RandFlipd",
    "RandGaussianNoised",
    "RandGaussianSmoothd",
    "RandScaleIntensityd",
    "RandSpatialCropd",
    "RandWeightedCropd",
    "ScaleIntensityRangePercentilesd",
    "ToDeviced",
]

RangeSpec = Sequence[tuple[float, float] | float] | float


class Decollated(monai_transforms.Decollated):
    """MONAI ``Decollated``: split the batched ``keys`` of a batch dict into a list of samples.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to decollate.
    detach : bool
        Detach tensors and turn 0-d tensors into numbers. Default True.
    pad_batch : bool
        Pad shorter entries to the batch size. Default True.
    fill_value : Any
        Padding value. Default None.
    **kwargs
        Other ``monai.transforms.Decollated`` arguments.
    """

    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self, keys: Keys, detach: bool = True, pad_batch: bool = True, fill_value: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(keys=keys, detach=detach, pad_batch=pad_batch, fill_value=fill_value, **kwargs)


class ToDeviced(monai_transforms.ToDeviced):
    """MONAI ``ToDeviced``: move the ``keys`` to a device.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to move.
    **kwargs
        Other ``monai.transforms.ToDeviced`` arguments; ``device`` (e.g. "cuda:0") is required.
    """

    runs_on_batches: ClassVar[bool] = True

    def __init__(self, keys: Keys, **kwargs: Any) -> None:
        super().__init__(keys=keys, **kwargs)


class RandWeightedCropd(monai_transforms.RandWeightedCropd):
    """MONAI ``RandWeightedCropd``: crops sampled in proportion to a weight map.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to crop.
    w_key : str
        Key of the weight map.
    spatial_size : Sequence[int] | int
        Crop size.
    num_samples : int
        Crops per sample. Default 1.
    **kwargs
        Other ``monai.transforms.RandWeightedCropd`` arguments.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = False

    def __init__(
        self, keys: Keys, w_key: str, spatial_size: Sequence[int] | int, num_samples: int = 1, **kwargs: Any
    ) -> None:
        super().__init__(keys=keys, w_key=w_key, spatial_size=spatial_size, num_samples=num_samples, **kwargs)


class RandAffined(monai_transforms.RandAffined):
    """MONAI ``RandAffined`` (per sample; angles in radians; MONAI's default padding is "reflection").

    Parameters
    ----------
    keys : str or sequence of str
        Keys to transform.
    prob : float
        Probability of transforming the sample.
    rotate_range : Sequence[tuple[float, float] | float] | float
        Rotation range in radians per spatial dim (MONAI semantics).
    shear_range : Sequence[tuple[float, float] | float] | float
        Shear factor range (MONAI semantics).
    scale_range : Sequence[tuple[float, float] | float] | float
        Scale range as an offset from 1 (MONAI semantics).
    **kwargs
        Other ``monai.transforms.RandAffined`` arguments (``translate_range``, ``mode``,
        ``padding_mode``...).
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = False

    def __init__(
        self,
        keys: Keys,
        prob: float,
        rotate_range: RangeSpec,
        shear_range: RangeSpec,
        scale_range: RangeSpec,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            keys=keys, prob=prob, rotate_range=rotate_range, shear_range=shear_range, scale_range=scale_range, **kwargs
        )


class RandAdjustContrastd(monai_transforms.RandAdjustContrastd):
    """MONAI ``RandAdjustContrastd``: random gamma contrast.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to adjust.
    prob : float
        Probability of adjusting the sample.
    gamma : tuple[float, float] | float
        Gamma range (MONAI semantics: a number g means (0.5, g)).
    **kwargs
        Other ``monai.transforms.RandAdjustContrastd`` arguments.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.INTENSITY
    runs_on_batches: ClassVar[bool] = False

    def __init__(self, keys: Keys, prob: float, gamma: tuple[float, float] | float, **kwargs: Any) -> None:
        super().__init__(keys=keys, prob=prob, gamma=gamma, **kwargs)


class RandScaleIntensityd(monai_transforms.RandScaleIntensityd):
    """MONAI ``RandScaleIntensityd``: ``x * (1 + f)`` with a random f.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to scale.
    factors : tuple[float, float] | float
        Range of f; a number f means (-f, f).
    prob : float
        Probability of scaling the sample.
    **kwargs
        Other ``monai.transforms.RandScaleIntensityd`` arguments.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.INTENSITY
    runs_on_batches: ClassVar[bool] = False

    def __init__(self, keys: Keys, factors: tuple[float, float] | float, prob: float, **kwargs: Any) -> None:
        super().__init__(keys=keys, factors=factors, prob=prob, **kwargs)


class RandGaussianNoised(monai_transforms.RandGaussianNoised):
    """MONAI ``RandGaussianNoised``: additive Gaussian noise.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to make noisy.
    prob : float
        Probability of adding noise to the sample.
    mean : float
        Mean of the noise.
    std : float
        Standard deviation of the noise.
    **kwargs
        Other ``monai.transforms.RandGaussianNoised`` arguments.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.INTENSITY
    runs_on_batches: ClassVar[bool] = False

    def __init__(self, keys: Keys, prob: float, mean: float, std: float, **kwargs: Any) -> None:
        super().__init__(keys=keys, prob=prob, mean=mean, std=std, **kwargs)


class RandGaussianSmoothd(monai_transforms.RandGaussianSmoothd):
    """MONAI ``RandGaussianSmoothd``: random Gaussian blur.

    Note MONAI's axis convention: ``sigma_x`` applies to the first spatial dim (Z of a
    (C, Z, Y, X) sample), the opposite of :class:`BatchedRandGaussianSmooth`.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to blur.
    prob : float
        Probability of blurring the sample.
    sigma_x, sigma_y, sigma_z : tuple[float, float] | float
        Sigma ranges of the first, second and third spatial dims.
    **kwargs
        Other ``monai.transforms.RandGaussianSmoothd`` arguments.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.INTENSITY
    runs_on_batches: ClassVar[bool] = False

    def __init__(
        self,
        keys: Keys,
        prob: float,
        sigma_x: tuple[float, float] | float,
        sigma_y: tuple[float, float] | float,
        sigma_z: tuple[float, float] | float,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys=keys, prob=prob, sigma_x=sigma_x, sigma_y=sigma_y, sigma_z=sigma_z, **kwargs)


class ScaleIntensityRangePercentilesd(monai_transforms.ScaleIntensityRangePercentilesd):
    """MONAI ``ScaleIntensityRangePercentilesd``: map two percentiles to a target range.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to scale.
    lower, upper : float
        Percentiles in [0, 100].
    b_min, b_max : float | None
        Target range.
    clip : bool
        Clip to [b_min, b_max]. Default False.
    relative : bool
        MONAI's relative mode. Default False.
    channel_wise : bool
        Percentiles per channel. Default False.
    dtype : DTypeLike | None
        Output dtype; None keeps the input's. Default None.
    allow_missing_keys : bool
        Skip absent keys. Default False.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.NORMALIZE
    runs_on_batches: ClassVar[bool] = False

    def __init__(
        self,
        keys: Keys,
        lower: float,
        upper: float,
        b_min: float | None,
        b_max: float | None,
        clip: bool = False,
        relative: bool = False,
        channel_wise: bool = False,
        dtype: DTypeLike | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(
            keys=keys,
            lower=lower,
            upper=upper,
            b_min=b_min,
            b_max=b_max,
            clip=clip,
            relative=relative,
            channel_wise=channel_wise,
            dtype=dtype,
            allow_missing_keys=allow_missing_keys,
        )


class RandSpatialCropd(monai_transforms.RandSpatialCropd):
    """MONAI ``RandSpatialCropd``: a crop at a random (or the central) position.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to crop.
    roi_size : Sequence[int] | int
        Crop size.
    random_center : bool
        Random position (default) or the center.
    **kwargs
        Other ``monai.transforms.RandSpatialCropd`` arguments.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = False

    def __init__(self, keys: Keys, roi_size: Sequence[int] | int, random_center: bool = True, **kwargs: Any) -> None:
        super().__init__(keys=keys, roi_size=roi_size, random_center=random_center, **kwargs)


class CenterSpatialCropd(monai_transforms.CenterSpatialCropd):
    """MONAI ``CenterSpatialCropd``: a central crop.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to crop.
    roi_size : Sequence[int] | int
        Crop size.
    **kwargs
        Other ``monai.transforms.CenterSpatialCropd`` arguments.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = False

    def __init__(self, keys: Keys, roi_size: Sequence[int] | int, **kwargs: Any) -> None:
        super().__init__(keys=keys, roi_size=roi_size, **kwargs)


class RandFlipd(monai_transforms.RandFlipd):
    """MONAI ``RandFlipd``: flip along the given spatial axes with probability ``prob``.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to flip.
    prob : float
        Probability of flipping the sample.
    spatial_axis : Sequence[int] | int | None
        Spatial axes to flip (all of them when None).
    **kwargs
        Other ``monai.transforms.RandFlipd`` arguments.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.SPATIAL
    runs_on_batches: ClassVar[bool] = False

    def __init__(self, keys: Keys, prob: float, spatial_axis: Sequence[int] | int | None, **kwargs: Any) -> None:
        super().__init__(keys=keys, prob=prob, spatial_axis=spatial_axis, **kwargs)


class NormalizeIntensityd(monai_transforms.NormalizeIntensityd):
    """MONAI ``NormalizeIntensityd``: subtract the mean and divide by the standard deviation.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to normalize.
    **kwargs
        Other ``monai.transforms.NormalizeIntensityd`` arguments.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.NORMALIZE
    runs_on_batches: ClassVar[bool] = False

    def __init__(self, keys: Keys, **kwargs: Any) -> None:
        super().__init__(keys=keys, **kwargs)
