"""Sliding-window Z-stack datasets and the virtual-staining data module for HCS OME-Zarr plates."""

from __future__ import annotations

import bisect
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from glob import glob
from numbers import Real
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
from iohub.ngff import Plate, Position
from monai.data import set_track_meta
from monai.transforms import CenterSpatialCropd, Compose, MapTransform, MultiSampleTrait, RandAffined, Transform
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from viscy_data._typing import ChannelMap, DictTransform, HCSStackIndex, Sample
from viscy_data._utils import (
    _ensure_channel_list,
    _position_channel_indices,
    _search_int_in_str,
    _validate_store_channels,
)
from viscy_data.normalization import read_norm_meta, select_timepoint
from viscy_data.ome_compat import array_name, fov_name, open_ome_zarr
from viscy_data.plate import PlateDataModule
from viscy_data.read_errors import naming_read_errors

__all__ = ["HCSDataModule", "MaskTestDataset", "SlidingWindowDataset"]

_logger = logging.getLogger(__name__)


class SlidingWindowDataset(Dataset):
    """Every Z window of every time point of a list of FOVs.

    Parameters
    ----------
    positions : list[Position]
        FOVs sharing one channel order.
    channels : ChannelMap
        Source and optional target channel names.
    z_window_size : int
        Number of Z slices per sample.
    array_key : str
        Image array (multiscale level) to read.
    transform : DictTransform, optional
        Applied to ``{channel: (1, Z, Y, X)}`` (plus ``norm_meta`` and, with targets,
        ``weight``); may return a list of such dicts (multi-sample crops).
    load_normalization_metadata : bool
        Add each FOV's normalization metadata, resolved to the sample's time point, as
        ``norm_meta`` (only for FOVs that have it).
    """

    def __init__(
        self,
        positions: list[Position],
        channels: ChannelMap,
        z_window_size: int,
        array_key: str = "0",
        transform: DictTransform | None = None,
        load_normalization_metadata: bool = True,
    ) -> None:
        super().__init__()
        if not positions:
            raise ValueError("SlidingWindowDataset needs at least one position.")
        self.positions = positions
        self.channels = {key: _ensure_channel_list(value) for key, value in channels.items()}
        self.source_ch_idx = _position_channel_indices(positions, self.channels["source"])
        self.target_ch_idx = (
            _position_channel_indices(positions, self.channels["target"]) if "target" in self.channels else None
        )
        self.z_window_size = z_window_size
        self.array_key = array_key
        self.transform = transform
        self.load_normalization_metadata = load_normalization_metadata
        self._get_windows()

    def _get_windows(self) -> None:
        """Count the windows of every FOV and read each FOV's normalization metadata once."""
        self.window_keys: list[int] = []
        self.window_arrays = []
        self.window_norm_meta = []
        total = 0
        for position in self.positions:
            if self.array_key not in position.array_keys():
                raise KeyError(
                    f"Array {self.array_key!r} not found in FOV {fov_name(position)}; "
                    f"arrays present: {list(position.array_keys())}."
                )
            image = position[self.array_key]
            z_windows = image.slices - self.z_window_size + 1
            if z_windows < 1:
                raise IndexError(
                    f"z_window_size {self.z_window_size} is larger than the {image.slices} Z slices "
                    f"of FOV {fov_name(position)}."
                )
            total += image.frames * z_windows
            self.window_keys.append(total)
            self.window_arrays.append(image)
            self.window_norm_meta.append(read_norm_meta(position) if self.load_normalization_metadata else None)
        self._max_window = total

    def __len__(self) -> int:
        return self._max_window

    def _find_window(self, index: int) -> tuple[Any, int, dict | None]:
        """Return the image array, the window index inside it and the FOV's norm meta."""
        if not 0 <= index < self._max_window:
            raise IndexError(f"Index {index} out of range for {self._max_window} windows.")
        fov = bisect.bisect_right(self.window_keys, index)
        start = self.window_keys[fov - 1] if fov > 0 else 0
        return self.window_arrays[fov], index - start, self.window_norm_meta[fov]

    def _read_img_window(self, image: Any, channel_index: list[int], time_index: int, z_index: int) -> list[Tensor]:
        """Read one window as a ``(1, Z, Y, X)`` float32 tensor per channel."""
        with naming_read_errors(image, time_point=time_index):
            selection = image.oindex[time_index : time_index + 1, channel_index, z_index : z_index + self.z_window_size]
        return list(torch.from_numpy(np.asarray(selection, dtype=np.float32)).unbind(dim=1))

    def _stack_channels(self, sample_images: dict[str, Tensor], key: str) -> Tensor:
        return torch.stack([sample_images[name][0] for name in self.channels[key]])

    def __getitem__(self, index: int) -> Sample:
        image, window, norm_meta = self._find_window(index)
        z_windows = image.slices - self.z_window_size + 1
        time_index, z_index = divmod(window, z_windows)
        names = list(self.channels["source"])
        channel_index = list(self.source_ch_idx)
        if self.target_ch_idx is not None:
            names += self.channels["target"]
            channel_index += self.target_ch_idx
        sample_images: dict[str, Any] = dict(
            zip(names, self._read_img_window(image, channel_index, time_index, z_index), strict=True)
        )
        if self.target_ch_idx is not None:
            sample_images["weight"] = sample_images[self.channels["target"][0]]
        norm_meta = select_timepoint(norm_meta, time_index)
        if norm_meta is not None:
            sample_images["norm_meta"] = norm_meta
        if self.transform is not None:
            sample_images = self.transform(sample_images)
        index_tuple = HCSStackIndex(array_name(image), time_index, z_index)
        if isinstance(sample_images, list):
            return self._format_samples(sample_images, index_tuple, norm_meta, many=True)
        return self._format_samples([sample_images], index_tuple, norm_meta, many=False)

    def _format_samples(
        self, images: list[dict[str, Tensor]], index: HCSStackIndex, norm_meta: dict | None, many: bool
    ) -> Sample:
        """Stack channels into ``source`` / ``target``, one entry per crop when ``many``."""
        sources = [self._stack_channels(d, "source") for d in images]
        sample: Sample = {"index": index, "source": sources if many else sources[0]}
        if self.target_ch_idx is not None:
            targets = [self._stack_channels(d, "target") for d in images]
            sample["target"] = targets if many else targets[0]
        if self.load_normalization_metadata and norm_meta is not None:
            sample["norm_meta"] = norm_meta
        return sample


class MaskTestDataset(SlidingWindowDataset):
    """Sliding windows with ground-truth masks for testing (use batch size 1).

    Masks are PNG files named like ``..._p003_z12_cp_masks.png`` (position 3, Z slice 12,
    time point 0). A window gets ``labels`` (int16) when its FOV number, time point and
    centre slice have a mask.

    Parameters
    ----------
    positions, channels, z_window_size, transform, array_key, load_normalization_metadata
        As :class:`SlidingWindowDataset`.
    ground_truth_masks : str or Path, optional
        Directory holding the ``*cp_masks.png`` files; no labels when None.
    """

    def __init__(
        self,
        positions: list[Position],
        channels: ChannelMap,
        z_window_size: int,
        transform: DictTransform | None = None,
        ground_truth_masks: str | Path | None = None,
        array_key: str = "0",
        load_normalization_metadata: bool = True,
    ) -> None:
        super().__init__(
            positions=positions,
            channels=channels,
            z_window_size=z_window_size,
            array_key=array_key,
            transform=transform,
            load_normalization_metadata=load_normalization_metadata,
        )
        self.masks: dict[tuple[int, int, int], Path] = {}
        if ground_truth_masks is None:
            return
        mask_dir = Path(ground_truth_masks)
        if not mask_dir.is_dir():
            raise NotADirectoryError(f"ground_truth_masks {mask_dir} is not a directory.")
        for mask_path in sorted(glob(str(mask_dir / "*cp_masks.png"))):
            name = Path(mask_path).name
            position_number = int(_search_int_in_str(r"(?<=_p)\d{3}", name))
            z_number = int(_search_int_in_str(r"(?<=_z)\d+", name))
            self.masks[(position_number, 0, z_number)] = Path(mask_path)
        _logger.info("Found %d ground-truth masks in %s", len(self.masks), mask_dir)

    def __getitem__(self, index: int) -> Sample:
        sample = super().__getitem__(index)
        image_name, time_index, z_index = sample["index"]
        position_number = int(image_name.strip("/").split("/")[-2])
        key = (position_number, int(time_index), int(z_index) + self.z_window_size // 2)
        if key in self.masks:
            sample["labels"] = torch.from_numpy(iio.imread(self.masks[key]).astype(np.int16))
        return sample


def _transform_parameter(transform: object, name: str) -> Any:
    """Return the parameter ``name`` of a transform, or None when it has none.

    The parameter is the transform's public attribute of that name or, when it has none, the
    one of a transform it wraps, searched breadth-first through its public attributes that are
    MONAI transforms: MONAI's dictionary transforms keep their parameters on the array
    transforms they wrap. No attribute chain of a particular library is assumed, so a
    transform that declares the parameter itself (e.g. ``num_samples``) works the same.
    """
    pending, seen = [transform], set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        value = getattr(current, name, None)
        if value is not None:
            return value
        attributes = getattr(current, "__dict__", {})
        pending.extend(v for k, v in attributes.items() if not k.startswith("_") and isinstance(v, Transform))
    return None


def _z_scale_range(augmentations: Sequence[Callable]) -> tuple[float, float]:
    """Return the Z scale range of the (single) ``RandAffined`` among ``augmentations``.

    Parameters
    ----------
    augmentations : Sequence[Callable]
        Per-sample training augmentations.

    Returns
    -------
    tuple[float, float]
        ``(low, high)`` of the affine's Z ``scale_range`` (a number ``s`` means ``(-s, s)``);
        ``(0.0, 0.0)`` without a ``RandAffined`` or without a Z scale range.

    Raises
    ------
    ValueError
        With more than one ``RandAffined``, or a range that does not contain 0.
    """
    affines = [aug for aug in augmentations if isinstance(aug, RandAffined)]
    if len(affines) > 1:
        raise ValueError(f"Only one RandAffined augmentation is supported, got {len(affines)}.")
    if not affines:
        return 0.0, 0.0
    scale_range = _transform_parameter(affines[0], "scale_range")
    z_scale = scale_range[0] if isinstance(scale_range, Sequence) and len(scale_range) > 0 else scale_range
    if z_scale is None:
        return 0.0, 0.0
    if isinstance(z_scale, Real):
        low, high = -float(z_scale), float(z_scale)
    else:
        low, high = (float(v) for v in z_scale)
    if not low <= 0.0 <= high:
        raise ValueError(f"The Z scale range of RandAffined must contain 0, got {(low, high)}.")
    return low, high


def _patches_per_stack(augmentations: Sequence[Callable], batch_size: int) -> int:
    """Return the patches each training stack gives: the ``num_samples`` of a multi-sample augmentation.

    Parameters
    ----------
    augmentations : Sequence[Callable]
        Per-sample training augmentations; at most one may be a MONAI ``MultiSampleTrait``
        (it returns a list of ``num_samples`` patches).
    batch_size : int
        Patches per training batch; must be divisible by ``num_samples``.

    Returns
    -------
    int
        ``num_samples`` of the multi-sample augmentation, 1 without one.

    Raises
    ------
    ValueError
        With more than one multi-sample augmentation, one whose ``num_samples`` cannot be
        read, or a ``batch_size`` that ``num_samples`` does not divide.
    """
    croppers = [aug for aug in augmentations if isinstance(aug, MultiSampleTrait)]
    if len(croppers) > 1:
        raise ValueError(f"Only one multi-sample augmentation is supported, got {len(croppers)}.")
    if not croppers:
        return 1
    num_samples = _transform_parameter(croppers[0], "num_samples")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(
            f"{type(croppers[0]).__name__} returns several samples but has no positive int num_samples "
            f"(got {num_samples!r}); give it a public num_samples attribute."
        )
    if batch_size % num_samples != 0:
        raise ValueError(
            f"Batch size must be divisible by `num_samples` per stack; "
            f"got batch size {batch_size} and num_samples {num_samples}."
        )
    return num_samples


class HCSDataModule(PlateDataModule):
    """Virtual-staining data: source and target Z windows of an HCS OME-Zarr plate.

    Where a batch is read, normalized and augmented: a loader worker process (the main
    process without workers) reads one Z window (:class:`SlidingWindowDataset`) and runs the
    per-sample transforms on it on the CPU: ``normalizations``, then (training only)
    ``augmentations``, then a centre crop to ``(z_window_size, *yx_patch_size)``. The samples
    are stacked into a batch and nothing runs on the device; before transfer,
    :meth:`on_before_batch_transfer` only keeps the centre target slice with ``target_2d``.
    For transforms that run on the device after transfer, see
    :class:`~viscy_data.triplet.TripletDataModule`.

    What the augmentations change is read from them, not set by them: the training window
    grows to ``ceil(z_window_size * (1 + high))`` slices (rounded down to even) for the Z
    scale range ``(low, high)`` of a ``RandAffined`` (:attr:`train_z_scale_range`), and a
    multi-sample crop's ``num_samples`` patches per stack make a training batch of
    ``batch_size // num_samples`` stacks (:attr:`train_patches_per_stack`). Both are computed
    from the augmentations' own parameters (``scale_range``, ``num_samples``) when read;
    building the transforms stores nothing.

    Parameters
    ----------
    data_path : str
        HCS OME-Zarr plate (or, for prediction, one FOV of a plate).
    source_channel : str or Sequence[str]
        Input channels.
    target_channel : str or Sequence[str]
        Output channels.
    z_window_size : int
        Z slices per sample.
    split_ratio : float
        Fraction of FOVs used for training; the rest validate.
    batch_size : int
        Samples per batch.
    num_workers : int
        Data loading worker processes.
    target_2d : bool
        Keep only the centre slice of the target.
    yx_patch_size : tuple[int, int]
        Final YX size of training and validation samples.
    normalizations : list[MapTransform], optional
        Per-sample CPU transforms applied first, in every stage.
    augmentations : list[MapTransform], optional
        Per-sample CPU transforms applied to training samples only, after the normalizations.
    caching : bool
        Copy the plate to a local cache directory (``$TMPDIR``) in ``prepare_data`` and read
        fit and test data from there. Works for zarr formats 2 and 3.
    ground_truth_masks : Path, optional
        Directory of ``*cp_masks.png`` files used in the test stage.
    persistent_workers : bool
        Keep workers alive between epochs (only with ``num_workers > 0``).
    prefetch_factor : int, optional
        Batches prefetched per worker (only with ``num_workers > 0``).
    array_key : str
        Image array (multiscale level) to read.
    pin_memory : bool
        Pin batches in page-locked memory.
    seed : int
        Seed of the train/validation FOV split and of the training shuffle.
    """

    def __init__(
        self,
        data_path: str,
        source_channel: str | Sequence[str],
        target_channel: str | Sequence[str],
        z_window_size: int,
        split_ratio: float = 0.8,
        batch_size: int = 16,
        num_workers: int = 8,
        target_2d: bool = False,
        yx_patch_size: tuple[int, int] = (256, 256),
        normalizations: list[MapTransform] | None = None,
        augmentations: list[MapTransform] | None = None,
        caching: bool = False,
        ground_truth_masks: Path | None = None,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        array_key: str = "0",
        pin_memory: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(data_path, source_channel, z_window_size, split_ratio, yx_patch_size, caching, array_key)
        self._set_loader_settings(batch_size, num_workers, persistent_workers, prefetch_factor, pin_memory, seed)
        self.target_channel = _ensure_channel_list(target_channel)
        self.target_2d = target_2d
        self.normalizations = list(normalizations or [])
        self.augmentations = list(augmentations or [])
        self.ground_truth_masks = ground_truth_masks
        self._check_inputs()
        _z_scale_range(self.augmentations)  # fail fast on augmentations the training window cannot follow
        _patches_per_stack(self.augmentations, self.batch_size)

    @property
    def train_z_scale_range(self) -> tuple[float, float]:
        """Z scale range ``(low, high)`` of the ``RandAffined`` augmentation, ``(0.0, 0.0)`` without one."""
        return _z_scale_range(self.augmentations)

    @property
    def train_patches_per_stack(self) -> int:
        """Patches per training stack: the ``num_samples`` of the multi-sample augmentation, 1 without one."""
        return _patches_per_stack(self.augmentations, self.batch_size)

    def _check_inputs(self) -> None:
        """Validate the data path, the channels and the Z window at construction."""
        self._store_shape = _validate_store_channels(
            self.data_path, self.source_channel + self.target_channel, self.array_key
        )
        if not 1 <= self.z_window_size <= self._store_shape[2]:
            raise ValueError(
                f"z_window_size {self.z_window_size} does not fit the {self._store_shape[2]} Z slices of "
                f"{self.data_path}; use 1 <= z_window_size <= {self._store_shape[2]}."
            )

    def _dataset_settings(self, targets: bool) -> dict[str, Any]:
        """Return the settings of a :class:`SlidingWindowDataset`, with or without the target channels."""
        channels: ChannelMap = {"source": self.source_channel}
        if targets:
            channels["target"] = self.target_channel
        return {"channels": channels, "z_window_size": self.z_window_size, "array_key": self.array_key}

    def _open_plate(self, path: Path) -> Plate:
        return open_ome_zarr(path, layout="hcs", mode="r")

    def _train_z_window(self) -> int:
        """Z slices read per training sample: ``z_window_size``, grown for the Z scale range of a ``RandAffined``."""
        low, high = self.train_z_scale_range
        if high <= 0:
            return self.z_window_size
        train_z_window = math.ceil(self.z_window_size * (1 + high))
        train_z_window -= train_z_window % 2
        n_slices = self._store_shape[2]
        if train_z_window > n_slices:
            raise ValueError(
                f"z_window_size {self.z_window_size} grows to {train_z_window} Z slices for the Z scale range "
                f"{(low, high)} of RandAffined, more than the {n_slices} Z slices of "
                f"{self.data_path}; lower z_window_size or the Z scale_range."
            )
        _logger.info("Training Z window expanded to %d slices for Z scaling.", train_z_window)
        return train_z_window

    def _setup_fit(self) -> None:
        train_transform, val_transform = self._fit_transform()
        settings = self._dataset_settings(targets=True)
        plate = self._open_plate(self.maybe_cached_data_path)
        positions = [position for _, position in plate.positions()]
        set_track_meta(False)
        train_positions, val_positions = self._split_positions(positions)
        self.train_dataset = SlidingWindowDataset(
            train_positions, transform=train_transform, **{**settings, "z_window_size": self._train_z_window()}
        )
        self.val_dataset = SlidingWindowDataset(val_positions, transform=val_transform, **settings)

    def _setup_test(self) -> None:
        if self.batch_size != 1:
            _logger.warning("Ignoring batch size %d in test stage (test batches hold one sample).", self.batch_size)
        settings = self._dataset_settings(targets=True)
        plate = self._open_plate(self.maybe_cached_data_path)
        positions = [position for _, position in plate.positions()]
        transform = Compose(self.normalizations)
        if self.ground_truth_masks is not None:
            self.test_dataset = MaskTestDataset(
                positions, transform=transform, ground_truth_masks=self.ground_truth_masks, **settings
            )
        else:
            self.test_dataset = SlidingWindowDataset(positions, transform=transform, **settings)

    def _positions_maybe_single(self) -> list[Position]:
        """Every position of the plate, or just the one ``data_path`` points at."""
        node = open_ome_zarr(self.data_path, layout="auto", mode="r")
        if isinstance(node, Position):
            plate_path = self.data_path.parent.parent.parent
            try:
                plate = self._open_plate(plate_path)
            except (FileNotFoundError, OSError, RuntimeError, KeyError) as error:
                raise FileNotFoundError(
                    f"Parent HCS store not found at {plate_path} for FOV {self.data_path}."
                ) from error
            name = "/".join(self.data_path.parts[-3:])
            return [plate[name]]
        return [position for _, position in node.positions()]

    def _setup_predict(self) -> None:
        set_track_meta(True)
        if self.caching:
            warnings.warn("Ignoring caching config in 'predict' stage.", stacklevel=2)
        positions = self._positions_maybe_single()
        self.predict_dataset = SlidingWindowDataset(
            positions, transform=Compose(self.normalizations), **self._dataset_settings(targets=False)
        )

    def _final_crop(self) -> CenterSpatialCropd:
        return CenterSpatialCropd(
            keys=self.source_channel + self.target_channel,
            roi_size=(self.z_window_size, *self.yx_patch_size),
        )

    def _fit_transform(self) -> tuple[Compose, Compose]:
        """Training (normalize, augment, crop) and validation (normalize, crop) per-sample transforms."""
        final_crop = [self._final_crop()]
        train_transform = Compose(self.normalizations + self.augmentations + final_crop)
        val_transform = Compose(self.normalizations + final_crop)
        return train_transform, val_transform

    def train_dataloader(self) -> DataLoader:
        """Return shuffled training batches of ``batch_size`` patches (stacks times patches per stack)."""
        return self._loader(
            self.train_dataset, self.batch_size // self.train_patches_per_stack, shuffle=True, drop_last=True
        )

    def test_dataloader(self) -> DataLoader:
        """Return test batches of one sample."""
        return self._loader(self.test_dataset, 1, shuffle=False)

    def on_before_batch_transfer(self, batch: Sample | Tensor, dataloader_idx: int) -> Sample | Tensor:
        """Keep only the centre target slice when ``target_2d`` (not while predicting)."""
        predicting = self.trainer is not None and self.trainer.predicting
        if predicting or isinstance(batch, Tensor):
            return batch
        if self.target_2d and "target" in batch:
            center = self.z_window_size // 2
            batch["target"] = batch["target"][:, :, center : center + 1]
        return batch
