"""Contrastive triplets from per-track image stacks (``.npy``) of dividing cells."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from monai.transforms import Compose, MapTransform
from torch import Tensor
from torch.utils.data import Dataset

from viscy_data._typing import DictTransform
from viscy_data._utils import _ensure_channel_list
from viscy_data.hcs import HCSDataModule

__all__ = ["CellDivisionTripletDataModule", "CellDivisionTripletDataset"]

_logger = logging.getLogger(__name__)

CHANNEL_MAPPING = {"bf": 0, "brightfield": 0, "h2b": 1, "nuclei": 1}
"""Channel name (case-insensitive) to index in the track arrays; other names must be integers."""


def _channel_index(name: str, n_channels: int) -> int:
    index = CHANNEL_MAPPING.get(name.lower())
    if index is None:
        try:
            index = int(name)
        except ValueError:
            raise ValueError(
                f"Channel '{name}' not found in CHANNEL_MAPPING {sorted(CHANNEL_MAPPING)} and is not an integer index."
            ) from None
    if not 0 <= index < n_channels:
        raise ValueError(f"Channel '{name}' maps to index {index}, but the tracks have {n_channels} channels.")
    return index


class CellDivisionTripletDataset(Dataset):
    """Anchors, temporal positives and other-track negatives from ``(T, C, Y, X)`` track files.

    Parameters
    ----------
    data_paths : list[Path]
        One ``.npy`` file per track, shaped ``(T, C, Y, X)``; the track id is the file stem.
    channel_names : list[str]
        Channels to use: names of :data:`CHANNEL_MAPPING` or integer indices.
    anchor_transform, positive_transform, negative_transform : DictTransform, optional
        Per-sample transforms of ``{channel: (1, 1, Y, X)}``.
    fit : bool
        Return positives (and negatives); otherwise an ``index``.
    time_interval : "any" or int
        Frames between anchor and positive; ``"any"`` makes the positive the same frame.
    return_negative : bool
        Also return a negative from another track.
    output_2d : bool
        Return ``(C, Y, X)`` patches instead of ``(C, 1, Y, X)``.
    seed : int
        Seed of the negative sampling (the same item always gets the same negative).
    """

    def __init__(
        self,
        data_paths: list[Path],
        channel_names: list[str],
        anchor_transform: DictTransform | None = None,
        positive_transform: DictTransform | None = None,
        negative_transform: DictTransform | None = None,
        fit: bool = True,
        time_interval: Literal["any"] | int = "any",
        return_negative: bool = True,
        output_2d: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not data_paths:
            raise ValueError("CellDivisionTripletDataset needs at least one track file.")
        if time_interval != "any" and (not isinstance(time_interval, int) or time_interval < 0):
            raise ValueError(f"time_interval must be 'any' or a non-negative int, got {time_interval!r}.")
        self.data_paths = [Path(p) for p in data_paths]
        self.channel_names = _ensure_channel_list(channel_names)
        self.anchor_transform = anchor_transform
        self.positive_transform = positive_transform
        self.negative_transform = negative_transform
        self.fit = fit
        self.time_interval = time_interval
        self.return_negative = return_negative
        self.output_2d = output_2d
        self.seed = seed
        self.tracks = [torch.from_numpy(np.load(path).astype(np.float32)) for path in self.data_paths]
        self.track_ids = [path.stem for path in self.data_paths]
        n_channels = {track.shape[1] for track in self.tracks}
        if len(n_channels) != 1:
            raise ValueError(f"Track files have different channel counts: {sorted(n_channels)}.")
        (track_channels,) = n_channels
        self.channel_indices = [_channel_index(name, track_channels) for name in self.channel_names]
        interval = 0 if time_interval == "any" or not fit else time_interval
        self.anchors = [(i, t) for i, track in enumerate(self.tracks) for t in range(len(track) - interval)]

    def __len__(self) -> int:
        return len(self.anchors)

    def _patch(self, track_index: int, t: int, transform: DictTransform | None) -> Tensor:
        """Return the ``(C, 1, Y, X)`` (or ``(C, Y, X)``) patch of one track and frame, transformed."""
        patch = self.tracks[track_index][t, self.channel_indices][:, None]
        if transform:
            sample = transform({name: patch[c : c + 1] for c, name in enumerate(self.channel_names)})
            patch = torch.cat([torch.as_tensor(sample[name]) for name in self.channel_names], dim=0)
        return patch[:, 0] if self.output_2d else patch

    def _negative(self, index: int, track_index: int, t: int) -> tuple[int, int]:
        rng = np.random.default_rng([self.seed, index])
        others = [i for i in range(len(self.tracks)) if i != track_index]
        if not others:
            frames = [f for f in range(len(self.tracks[track_index])) if f != t]
            return track_index, int(rng.choice(frames)) if frames else t
        other = int(rng.choice(others))
        n_frames = len(self.tracks[other])
        if self.time_interval != "any" and t + self.time_interval < n_frames:
            return other, t + self.time_interval
        return other, int(rng.integers(n_frames))

    def __getitem__(self, index: int) -> dict[str, Any]:
        track_index, t = self.anchors[index]
        sample: dict[str, Any] = {"anchor": self._patch(track_index, t, self.anchor_transform)}
        if not self.fit:
            sample["index"] = {"fov_name": self.track_ids[track_index], "id": t}
            return sample
        positive_t = t if self.time_interval == "any" else t + self.time_interval
        sample["positive"] = self._patch(track_index, positive_t, self.positive_transform)
        if self.return_negative:
            sample["negative"] = self._patch(*self._negative(index, track_index, t), self.negative_transform)
        return sample


class CellDivisionTripletDataModule(HCSDataModule):
    """Triplets of dividing-cell tracks stored as ``.npy`` files in one directory.

    Where a batch is read, normalized and augmented: as in
    :class:`~viscy_data.hcs.HCSDataModule`, per sample on the CPU in the loader's workers
    (each track file is read once, at construction of the datasets).

    Parameters
    ----------
    data_path : str
        Directory of the ``(T, C, Y, X)`` track files.
    source_channel : str or Sequence[str]
        Channels (names of :data:`CHANNEL_MAPPING` or indices).
    final_yx_patch_size : tuple[int, int]
        YX size after the center crop.
    split_ratio : float
        Fraction of tracks used for training.
    batch_size, num_workers, persistent_workers, prefetch_factor, pin_memory
        DataLoader settings.
    normalizations, augmentations : list[MapTransform], optional
        Per-sample transforms keyed by channel name.
    augment_validation : bool
        Augment validation samples too.
    time_interval : "any" or int
        Frames between anchor and positive.
    return_negative : bool
        Also return negatives.
    output_2d : bool
        Return ``(B, C, Y, X)`` instead of ``(B, C, 1, Y, X)``.
    seed : int
        Seed of the track split, the shuffle and the negative sampling.
    """

    def __init__(
        self,
        data_path: str,
        source_channel: str | Sequence[str],
        final_yx_patch_size: tuple[int, int] = (64, 64),
        split_ratio: float = 0.8,
        batch_size: int = 16,
        num_workers: int = 8,
        normalizations: list[MapTransform] | None = None,
        augmentations: list[MapTransform] | None = None,
        augment_validation: bool = True,
        time_interval: Literal["any"] | int = "any",
        return_negative: bool = True,
        output_2d: bool = False,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        pin_memory: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(
            data_path=data_path,
            source_channel=source_channel,
            target_channel=[],
            z_window_size=1,
            split_ratio=split_ratio,
            batch_size=batch_size,
            num_workers=num_workers,
            yx_patch_size=final_yx_patch_size,
            normalizations=normalizations,
            augmentations=augmentations,
            caching=False,
            persistent_workers=persistent_workers,
            prefetch_factor=prefetch_factor,
            pin_memory=pin_memory,
            seed=seed,
        )
        self.final_yx_patch_size = tuple(final_yx_patch_size)
        self.augment_validation = augment_validation
        self.time_interval = time_interval
        self.return_negative = return_negative
        self.output_2d = output_2d

    def _check_inputs(self) -> None:
        """Find the track files at construction."""
        self.data_paths = sorted(Path(self.data_path).glob("*.npy"))
        if not self.data_paths:
            raise ValueError(f"No .npy files found in {self.data_path}.")

    def _datasets_settings(self) -> dict[str, Any]:
        return {
            "channel_names": self.source_channel,
            "time_interval": self.time_interval,
            "return_negative": self.return_negative,
            "output_2d": self.output_2d,
            "seed": self.seed,
        }

    def _setup_fit(self) -> None:
        augmenting, plain = self._fit_transform()
        anchor_transform = plain if self.time_interval in ("any", 0) else augmenting
        train_paths, val_paths = self._split_positions(list(self.data_paths))
        self.train_dataset = CellDivisionTripletDataset(
            train_paths,
            anchor_transform=anchor_transform,
            positive_transform=augmenting,
            negative_transform=augmenting,
            **self._datasets_settings(),
        )
        val_augmenting = augmenting if self.augment_validation else plain
        self.val_dataset = CellDivisionTripletDataset(
            val_paths,
            anchor_transform=anchor_transform if self.augment_validation else plain,
            positive_transform=val_augmenting,
            negative_transform=val_augmenting,
            **self._datasets_settings(),
        )

    def _setup_predict(self) -> None:
        self.predict_dataset = CellDivisionTripletDataset(
            list(self.data_paths), anchor_transform=Compose(self.normalizations), fit=False, **self._datasets_settings()
        )

    def _setup_test(self) -> None:
        raise NotImplementedError("Self-supervised model does not support testing")
