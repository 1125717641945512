"""Helpers shared by the dictionary transforms: which keys to touch and whether their shapes agree."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Self

import numpy as np
import torch
from monai.transforms import MapTransform, Randomizable
from torch import Tensor

from viscy_transforms._random import RandomTransform

__all__ = ["ArrayMapTransform", "Keys", "SharedDrawMapTransform", "check_same_shape", "present_keys"]

Keys = str | Sequence[str]
"""The ``keys`` argument of the dictionary transforms: one sample key (a channel name) or several.

Annotated as strings, not MONAI's ``Hashable``, so that jsonargparse can write them back:
LightningCLI saves every run's ``config.yaml``, and with ``Hashable`` it writes
"Unable to serialize instance ..." in place of each key. Other hashable keys still work from Python.
"""


def present_keys(transform: MapTransform, data: Mapping[Hashable, Any]) -> list[Hashable]:
    """Return the transform's keys found in ``data``, in the transform's order.

    Raises
    ------
    KeyError
        If a key is absent and ``allow_missing_keys`` is False; the message lists the keys present.
    """
    missing = [key for key in transform.keys if key not in data]
    if missing and not transform.allow_missing_keys:
        raise KeyError(
            f"{type(transform).__name__}: key(s) {missing} not found in the sample; "
            f"keys present: {list(data)}. Pass allow_missing_keys=True to skip absent keys."
        )
    return [key for key in transform.keys if key in data]


def check_same_shape(
    data: Mapping[Hashable, Tensor], keys: Sequence[Hashable], dims: slice, what: str, transform: object
) -> None:
    """Raise ValueError unless ``data[key].shape[dims]`` is the same for every key.

    ``what`` says which part of the shape must agree (for the message), e.g. "batch size".
    """
    shapes = {key: tuple(data[key].shape[dims]) for key in keys}
    if len(set(shapes.values())) > 1:
        raise ValueError(
            f"{type(transform).__name__} applies one random draw to all its keys, so their {what} must "
            f"agree; got {shapes}"
        )


class ArrayMapTransform(MapTransform):
    """Dictionary version of a deterministic array transform ``self.transform``, applied to every key present."""

    transform: Callable[[Tensor], Tensor]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Transform every key present; other entries pass through unchanged.

        Parameters
        ----------
        data : Mapping[Hashable, Any]
            Sample dictionary.

        Returns
        -------
        dict[Hashable, Any]
            A shallow copy of ``data`` with the keys transformed (the input is not modified).
        """
        out = dict(data)
        for key in present_keys(self, out):
            out[key] = self.transform(out[key])
        return out


class SharedDrawMapTransform(Randomizable, MapTransform):
    """Dictionary version of a random transform ``self.transform``: one draw for every key.

    Each call draws the parameters once, from the first of the transform's own keys present in
    the sample (never from other entries such as ``index`` or ``norm_meta``), and applies them to
    every key, so source and target stay aligned. The keys must agree on the parts of the shape
    the parameters are drawn for (``self.transform.shared_shape``). The draw is kept in
    ``self.transform.params``. A subclass only builds ``self.transform`` (a
    :class:`~viscy_transforms._random.RandomTransform`) in its constructor.
    """

    transform: RandomTransform[Any]

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> Self:
        """Reseed the wrapped transform (see ``TorchRandomizable.set_random_state``).

        Parameters
        ----------
        seed : int | None
            Integer seed.
        state : numpy.random.RandomState | None
            Used when ``seed`` is None.

        Returns
        -------
        Self
            The transform itself.
        """
        super().set_random_state(seed=seed, state=state)
        self.transform.set_random_state(seed=seed, state=state)
        return self

    def randomize(self, data: Tensor) -> None:
        """Draw new parameters for a batch like ``data`` (kept in ``self.transform.params``)."""
        self.transform.randomize(data)

    def draw_parameters(self, shape: Sequence[int]) -> Any:
        """Draw the parameters of one call on keys of ``shape``, without applying them.

        Parameters
        ----------
        shape : Sequence[int]
            Shape of the keys' tensors.

        Returns
        -------
        Any
            The wrapped transform's parameters, to pass to ``__call__(data, params=...)``.
        """
        return self.transform.draw_parameters(shape)

    @torch.no_grad()
    def __call__(self, data: Mapping[Hashable, Any], params: Any = None) -> dict[Hashable, Any]:
        """Apply one random draw (or the given parameters) to every key present; other entries pass through.

        Parameters
        ----------
        data : Mapping[Hashable, Any]
            Sample dictionary; the keys hold (batched) tensors.
        params : Any
            Parameters to apply instead of a new draw, from :meth:`draw_parameters` or
            ``self.transform.params``.

        Returns
        -------
        dict[Hashable, Any]
            A shallow copy of ``data`` with the keys transformed (the input is not modified).
        """
        out = dict(data)
        keys = present_keys(self, out)
        if not keys:
            return out
        for dims, what in self.transform.shared_shape:
            check_same_shape(out, keys, dims, what, self)
        params = self.transform.resolve_parameters(out[keys[0]], params=params)
        for key in keys:
            out[key] = self.transform.apply(out[key], params)
        return out
