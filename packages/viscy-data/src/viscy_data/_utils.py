"""Helpers shared by the datasets and data modules."""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from monai.data.utils import collate_meta_tensor
from monai.transforms import CenterSpatialCrop, Cropd
from torch import Tensor

from viscy_data.channel_wise import collate_norm_meta
from viscy_data.ome_compat import fov_name, open_ome_zarr
from viscy_data.seeding import WorkerTransformSeeder, current_rank

__all__ = ["BatchedCenterSpatialCropd"]


class _BatchedCenterSpatialCrop(CenterSpatialCrop):
    """Center crop of batched ``(B, C, *spatial)`` tensors; B and C are left untouched."""

    def __init__(self, roi_size: Sequence[int] | int) -> None:
        super().__init__(roi_size, lazy=False)

    def __call__(self, img: Tensor, lazy: bool | None = None) -> Tensor:  # type: ignore[override]
        slices = self.compute_slices(img.shape[2:])
        return img[(slice(None), slice(None), *slices)]


class BatchedCenterSpatialCropd(Cropd):
    """Dictionary center crop of batched ``(B, C, *spatial)`` tensors.

    Parameters
    ----------
    keys : str or Sequence[str]
        Keys of the tensors to crop.
    roi_size : int or Sequence[int]
        Spatial size of the crop; a non-positive entry keeps that dimension whole.
    allow_missing_keys : bool
        Skip keys missing from the data instead of raising.
    """

    transform_kind: ClassVar[str] = "spatial"  # declarations read by viscy_data.after_transfer
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self, keys: str | Sequence[str], roi_size: Sequence[int] | int, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, cropper=_BatchedCenterSpatialCrop(roi_size), allow_missing_keys=allow_missing_keys)

    @property
    def centre_crop_size(self) -> Sequence[int] | int:
        """The crop's size, as given (read by ``viscy_data.after_transfer`` to fuse it into a random affine)."""
        return self.cropper.roi_size


def _ensure_channel_list(str_or_seq: str | Iterable[str]) -> list[str]:
    """Return channel names as a list: a string becomes a one-element list."""
    if isinstance(str_or_seq, str):
        return [str_or_seq]
    if isinstance(str_or_seq, Iterable):
        return list(str_or_seq)
    raise TypeError(f"Channel argument must be a string or sequence of strings, got {str_or_seq!r}.")


def _search_int_in_str(pattern: str, file_name: str) -> str:
    """Return the first match of ``pattern`` in ``file_name`` (as a string)."""
    match = re.search(pattern, file_name)
    if match is None:
        raise ValueError(f"Cannot find pattern {pattern!r} in {file_name!r}.")
    return match.group()


def _channel_indices(available: Sequence[str], wanted: Sequence[str]) -> list[int]:
    """Return the indices of ``wanted`` channels, failing with the list of channels present."""
    available = list(available)
    missing = [name for name in wanted if name not in available]
    if missing:
        raise ValueError(f"Channel(s) {missing} not found; the data has channels {available}.")
    return [available.index(name) for name in wanted]


def _position_channel_indices(positions: Sequence[Any], names: Sequence[str]) -> list[int]:
    """Return channel indices on the first position; every position must have the same channels."""
    reference = list(positions[0].channel_names)
    for position in positions[1:]:
        if list(position.channel_names) != reference:
            raise ValueError(
                f"FOV {fov_name(position)} has channels {list(position.channel_names)}, "
                f"but FOV {fov_name(positions[0])} has {reference}; all FOVs must share one channel order."
            )
    return _channel_indices(reference, names)


def _validate_store_channels(store_path: Path, channels: Sequence[str], array_key: str = "0") -> tuple[int, ...]:
    """Fail fast when a store is missing or lacks a channel (the message lists its channels).

    Returns
    -------
    tuple[int, ...]
        Shape ``(T, C, Z, Y, X)`` of the first position's image array.
    """
    if not Path(store_path).exists():
        raise FileNotFoundError(f"OME-Zarr store not found: {store_path}")
    with open_ome_zarr(store_path, layout="auto", mode="r") as node:
        _channel_indices(node.channel_names, channels)
        position = next(node.positions())[1] if hasattr(node, "positions") else node
        if array_key not in position.array_keys():
            raise KeyError(f"Array {array_key!r} not found in {store_path}; arrays: {list(position.array_keys())}.")
        return tuple(position[array_key].shape)


def _loader_kwargs(
    num_workers: int,
    prefetch_factor: int | None,
    persistent_workers: bool,
    pin_memory: bool,
    *,
    thread_workers: bool = False,
) -> dict[str, Any]:
    """DataLoader worker arguments; worker-only options are passed only with workers.

    Worker processes reseed the dataset's random transforms per worker and epoch
    (:class:`~viscy_data.seeding.WorkerTransformSeeder`); ``thread_workers``
    (:class:`~viscy_data.thread_loader.ThreadedDataLoader`) share them, so get no ``worker_init_fn``.
    """
    kwargs: dict[str, Any] = {"num_workers": num_workers, "pin_memory": pin_memory}
    if num_workers > 0:
        kwargs["prefetch_factor"] = prefetch_factor
        kwargs["persistent_workers"] = persistent_workers
        if not thread_workers:
            kwargs["worker_init_fn"] = WorkerTransformSeeder(rank=current_rank())
    return kwargs


def _check_z_range(start: int | None, stop: int | None, n_slices: int, where: str) -> None:
    """Fail, naming ``z_range`` and its valid range, unless ``[start, stop)`` fits the ``n_slices`` of ``where``."""
    if start is None or stop is None or not 0 <= start < stop <= n_slices:
        raise ValueError(
            f"z_range {(start, stop)} does not fit the {n_slices} Z slices of {where}; "
            f"use [start, stop) with 0 <= start < stop <= {n_slices}."
        )


class MissingColumnsError(KeyError, ValueError):
    """A table lacks required columns.

    Both a ``KeyError`` (a missing key, as pandas raises) and a ``ValueError`` (bad input), so that
    callers catching either see it: one exception type for this condition across the packages.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _require_columns(columns: Iterable[Hashable], required: Iterable[str], what: str) -> None:
    """Raise :class:`MissingColumnsError` naming the missing columns and the columns present."""
    found = list(columns)
    missing = [name for name in required if name not in found]
    if missing:
        raise MissingColumnsError(f"{what} lacks columns {missing}; columns present: {found}.")


def _split_indices(n: int, split_ratio: float, seed: int) -> tuple[list[int], list[int]]:
    """Shuffle ``range(n)`` with a seeded generator and split it into train and validation.

    The first ``int(n * split_ratio)`` shuffled indices are for training; the split is the
    same on every process given the same seed.
    """
    if not 0.0 < split_ratio <= 1.0:
        raise ValueError(f"split_ratio must be in (0, 1], got {split_ratio}.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_train = int(n * split_ratio)
    if n_train == 0:
        raise ValueError(f"split_ratio {split_ratio} leaves no training FOV out of {n}.")
    return order[:n_train], order[n_train:]


def _collate_samples(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate samples, flattening the per-stack lists of multi-sample crops.

    A sample value that is a ``list`` (k patches cropped from one stack) is extended into
    the batch, so B/k stacks with k patches each give a batch of B. Tuples such as the
    ``index`` are collated like PyTorch does: ``index`` becomes ``[names, t, z]``.
    ``norm_meta`` goes through :func:`collate_norm_meta`.
    """
    collated: dict[str, Any] = {}
    for key in batch[0]:
        values: list[Any] = []
        for sample in batch:
            value = sample.get(key)
            if isinstance(value, list):
                values.extend(value)
            else:
                values.append(value)
        collated[key] = collate_norm_meta(values) if key == "norm_meta" else collate_meta_tensor(values)
    if "norm_meta" not in collated and any("norm_meta" in sample for sample in batch):
        collated["norm_meta"] = collate_norm_meta([sample.get("norm_meta") for sample in batch])
    return collated
