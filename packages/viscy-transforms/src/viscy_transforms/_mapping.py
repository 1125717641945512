"""Helpers shared by the dictionary transforms: which keys to touch and whether their shapes agree."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Self

import torch
from monai.transforms import MapTransform, Randomizable
from torch import Tensor

__all__ = ["ArrayMapTransform", "RandomMapTransform", "SharedDrawMapTransform", "check_same_shape", "present_keys"]


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


class RandomMapTransform(Randomizable, MapTransform):
    """Dictionary transform drawing its random parameters once per call and applying them to every key.

    The draw is made from the first of the transform's own keys present in the sample (never from
    other entries such as ``index`` or ``norm_meta``). Subclasses implement ``randomize(data)`` and
    ``apply(data)`` and may extend ``shared_shape``, the parts of the shape that must agree across
    keys for one draw to fit them all.
    """

    shared_shape: tuple[tuple[slice, str], ...] = ((slice(0, 1), "batch sizes"),)

    def apply(self, data: Tensor) -> Tensor:
        """Apply the current draw to one key's batch."""
        raise NotImplementedError(f"{type(self).__name__} must implement apply()")

    @torch.no_grad()
    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Apply one random draw to every key present; other entries pass through unchanged.

        Parameters
        ----------
        data : Mapping[Hashable, Any]
            Sample dictionary; the keys hold batched tensors.

        Returns
        -------
        dict[Hashable, Any]
            A shallow copy of ``data`` with the keys transformed (the input is not modified).
        """
        out = dict(data)
        keys = present_keys(self, out)
        if not keys:
            return out
        for dims, what in self.shared_shape:
            check_same_shape(out, keys, dims, what, self)
        self.randomize(out[keys[0]])
        for key in keys:
            out[key] = self.apply(out[key])
        return out


class SharedDrawMapTransform(RandomMapTransform):
    """Dictionary version of a batched array transform ``self.transform``: one draw for every key.

    The array transform must accept ``transform(data, randomize=False)``.
    """

    transform: Randomizable

    def apply(self, data: Tensor) -> Tensor:
        """Apply the wrapped transform's current draw to one key's batch."""
        return self.transform(data, randomize=False)

    def set_random_state(self, seed: int | None = None, state: Any = None) -> Self:
        """Reseed the wrapped array transform (see ``TorchRandomizable.set_random_state``).

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
        """Draw new random parameters for a batch like ``data``."""
        self.transform.randomize(data)
