"""Normalization of samples with the precomputed statistics carried in ``norm_meta``."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, ClassVar, Literal, get_args

from monai.transforms import MapTransform
from torch import Tensor

from viscy_transforms._mapping import Keys, present_keys
from viscy_transforms._typing import NormMeta
from viscy_transforms.kinds import TransformKind

__all__ = ["NormalizeSampled"]

NormalizationLevel = Literal["fov_statistics", "dataset_statistics", "timepoint_statistics"]

_LEVELS = get_args(NormalizationLevel)
_EPSILON = 1e-8


class NormalizeSampled(MapTransform):
    """Normalize each key with its channel's statistics: ``(x - subtrahend) / (divisor + 1e-8)``.

    The statistics come from ``sample["norm_meta"][key][level]``, where ``key`` is the channel
    name. Each statistic is a tensor of shape ``()`` (one value) or ``(B,)`` (one per sample of a
    batch); it is moved to the data's device and dtype and broadcast over the other dims. For
    ``timepoint_statistics`` the data module supplies the statistics of the sample's own
    timepoint in the same shapes.

    The ``+ 1e-8`` on the divisor is the reference formula, kept so that models trained with
    it see identical inputs; statistics with a zero divisor therefore blow values up rather than
    failing.

    Parameters
    ----------
    keys : str or sequence of str
        Channel names to normalize; each must also be a key of ``norm_meta``.
    level : {"fov_statistics", "dataset_statistics", "timepoint_statistics"}
        Which statistics to use.
    subtrahend : str
        Statistic subtracted, e.g. "mean" or "median". Default "mean".
    divisor : str
        Statistic divided by, e.g. "std" or "iqr". Default "std".
    remove_meta : bool
        Drop ``norm_meta`` from the output. Default False.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.NORMALIZE
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self,
        keys: Keys,
        level: NormalizationLevel,
        subtrahend: str = "mean",
        divisor: str = "std",
        remove_meta: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys=False)
        if level not in _LEVELS:
            raise ValueError(f"level must be one of {_LEVELS}, got {level!r}")
        self.level = level
        self.subtrahend = subtrahend
        self.divisor = divisor
        self.remove_meta = remove_meta

    def _statistic(self, norm_meta: NormMeta, key: Hashable, name: str, data: Tensor) -> Tensor:
        if key not in norm_meta:
            raise KeyError(f"norm_meta has no statistics for channel {key!r}; channels present: {list(norm_meta)}")
        levels = norm_meta[key]
        if self.level not in levels:
            raise KeyError(f"norm_meta[{key!r}] has no {self.level!r}; levels present: {list(levels)}")
        statistics = levels[self.level]
        if name not in statistics:
            raise KeyError(
                f"norm_meta[{key!r}][{self.level!r}] has no {name!r}; statistics present: {list(statistics)}"
            )
        value = statistics[name]
        value = value if isinstance(value, Tensor) else data.new_tensor(value)
        if value.ndim > 1 or (value.ndim == 1 and value.shape[0] != data.shape[0]):
            raise ValueError(
                f"norm_meta[{key!r}][{self.level!r}][{name!r}] must have shape () or ({data.shape[0]},), "
                f"got {tuple(value.shape)}"
            )
        value = value.to(device=data.device, dtype=data.dtype)
        return value.reshape(value.shape + (1,) * (data.ndim - value.ndim))

    def __call__(self, sample: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Normalize every key; returns a shallow copy of ``sample``.

        Parameters
        ----------
        sample : Mapping[Hashable, Any]
            A sample or batch with ``norm_meta``.

        Returns
        -------
        dict[Hashable, Any]
            The normalized sample, without ``norm_meta`` when ``remove_meta``.
        """
        norm_meta = sample.get("norm_meta")
        if norm_meta is None:
            raise KeyError(f"{type(self).__name__} needs sample['norm_meta']; keys present: {list(sample)}")
        out = dict(sample)
        for key in present_keys(self, out):
            data = out[key]
            subtrahend = self._statistic(norm_meta, key, self.subtrahend, data)
            divisor = self._statistic(norm_meta, key, self.divisor, data)
            out[key] = (data - subtrahend) / (divisor + _EPSILON)
        if self.remove_meta:
            del out["norm_meta"]
        return out
