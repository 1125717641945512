"""Supervised classification of annotated cells (e.g. infection state) from an HCS plate."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from iohub.ngff import Plate
from lightning.pytorch import LightningDataModule
from monai.transforms import Compose
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from viscy_data._typing import (
    INDEX_COLUMNS,
    LABEL_CELL_CYCLE_STATE,
    LABEL_CELL_DIVISION_STATE,
    LABEL_CELL_REMODELING_STATE,
    LABEL_INFECTION_STATE,
    AnnotationColumns,
)
from viscy_data._utils import _channel_indices, _check_z_range, _loader_kwargs, _require_columns
from viscy_data.normalization import read_norm_meta
from viscy_data.ome_compat import fov_name, open_ome_zarr
from viscy_data.read_errors import naming_read_errors

__all__ = ["ClassificationDataModule", "ClassificationDataset"]

_logger = logging.getLogger(__name__)

_LABEL_MAPS = {
    "infection_state": LABEL_INFECTION_STATE,
    "cell_division_state": LABEL_CELL_DIVISION_STATE,
    "cell_remodeling_state": LABEL_CELL_REMODELING_STATE,
    "cell_cycle_state": LABEL_CELL_CYCLE_STATE,
}


def _numeric_labels(values: pd.Series, label_column: str) -> np.ndarray:
    """Return labels as floats, mapping state names (e.g. ``"infected"``) through the label maps."""
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.float32)
    label_map = _LABEL_MAPS.get(label_column, {})
    unknown = sorted(set(values.astype(str)) - set(label_map))
    if unknown:
        raise ValueError(f"Column {label_column!r} has labels {unknown}; expected numbers or {list(label_map)}.")
    return values.astype(str).map(label_map).to_numpy(dtype=np.float32)


class ClassificationDataset(Dataset):
    """Patches around annotated cells with their label, z-scored by FOV statistics.

    Parameters
    ----------
    plate : Plate
        HCS plate with ``fov_statistics`` normalization metadata for ``channel_name``.
    annotation : pd.DataFrame
        One row per cell and time point: ``fov_name, t, y, x`` and the label column (all of
        ``INDEX_COLUMNS`` with ``return_indices``).
    channel_name : str
        Channel to read.
    z_range : tuple[int, int]
        Z slices to read.
    transform : Callable, optional
        Applied to the ``(1, Z, Y, X)`` patch.
    initial_yx_patch_size : tuple[int, int]
        YX size of the patch.
    return_indices : bool
        Also return the tracking index of the cell.
    label_column : AnnotationColumns
        Column holding the label.
    """

    def __init__(
        self,
        plate: Plate,
        annotation: pd.DataFrame,
        channel_name: str,
        z_range: tuple[int, int],
        transform: Callable | None,
        initial_yx_patch_size: tuple[int, int],
        return_indices: bool = False,
        label_column: AnnotationColumns = "infection_state",
    ) -> None:
        super().__init__()
        self.plate = plate
        self.channel_name = channel_name
        self.channel_index = _channel_indices(plate.channel_names, [channel_name])[0]
        self.z_range = tuple(z_range)
        self.transform = transform
        self.initial_yx_patch_size = tuple(initial_yx_patch_size)
        self.return_indices = return_indices
        self.label_column = label_column
        required = ["fov_name", "t", "y", "x", label_column] + (list(INDEX_COLUMNS) if return_indices else [])
        _require_columns(annotation.columns, dict.fromkeys(required), "Annotation table")
        positions = dict(plate.positions())
        _, _, n_slices, height, width = next(iter(positions.values()))["0"].shape
        _check_z_range(*self.z_range, n_slices, "the plate")
        half_y, half_x = self.initial_yx_patch_size[0] // 2, self.initial_yx_patch_size[1] // 2
        fovs = annotation["fov_name"].astype(str).str.strip("/")
        unknown = sorted(set(fovs) - set(positions))
        if unknown:
            raise ValueError(f"Annotations name FOVs {unknown[:5]} not in the plate; plate FOVs: {sorted(positions)}.")
        inside = annotation["y"].between(half_y + 1, height - half_y - 1) & annotation["x"].between(
            half_x + 1, width - half_x - 1
        )
        if not inside.all():
            _logger.warning("Dropped %d of %d annotated cells at the image border.", int((~inside).sum()), len(inside))
        self.annotation = annotation[inside].assign(fov_name=fovs[inside]).reset_index(drop=True)
        self._labels = _numeric_labels(self.annotation[label_column], label_column)
        self._positions = positions
        self._fov_stats = {}
        for name in self.annotation["fov_name"].unique():
            stats = (read_norm_meta(positions[name]) or {}).get(channel_name, {}).get("fov_statistics")
            if stats is None or "mean" not in stats or "std" not in stats:
                raise ValueError(f"FOV {name} has no fov_statistics (mean, std) for channel {channel_name!r}.")
            self._fov_stats[name] = (float(stats["mean"]), float(stats["std"]))

    def __len__(self) -> int:
        return len(self.annotation)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, dict[str, Any]]:
        row = self.annotation.iloc[index]
        half_y, half_x = self.initial_yx_patch_size[0] // 2, self.initial_yx_patch_size[1] // 2
        y, x, t = int(row["y"]), int(row["x"]), int(row["t"])
        array = self._positions[row["fov_name"]]["0"]
        with naming_read_errors(array, time_point=t):
            patch = array[t, self.channel_index, slice(*self.z_range), y - half_y : y + half_y, x - half_x : x + half_x]
        image = torch.from_numpy(np.asarray(patch, dtype=np.float32))[None]
        mean, std = self._fov_stats[row["fov_name"]]
        image = (image - mean) / (std + 1e-8)
        if self.transform is not None:
            image = self.transform(image)
        label = torch.tensor([self._labels[index]], dtype=torch.float32)
        if self.return_indices:
            return image, label, {column: _python_scalar(row[column]) for column in INDEX_COLUMNS}
        return image, label


def _python_scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


class ClassificationDataModule(LightningDataModule):
    """Annotated cells split into training and validation FOVs.

    Parameters
    ----------
    image_path : Path
        HCS OME-Zarr plate.
    annotation_path : Path
        Annotation CSV (``fov_name, t, y, x``, the label column and, for prediction, all
        ``INDEX_COLUMNS``); labels are numbers or state names such as ``"infected"``.
    val_fovs : list[str], optional
        Validation FOVs (with or without a leading "/"); None validates on nothing.
    channel_name : str
        Channel to read.
    z_range : tuple[int, int]
        Z slices to read.
    train_exclude_timepoints : list[int]
        Time points left out of training.
    train_transforms, val_transforms : list[Callable]
        Applied to each patch.
    initial_yx_patch_size : tuple[int, int]
        YX size of the patches.
    batch_size : int
        Patches per batch.
    num_workers : int
        Data loading worker processes.
    label_column : AnnotationColumns
        Column holding the label, in every stage.
    seed : int
        Seed of the training shuffle.
    """

    def __init__(
        self,
        image_path: Path,
        annotation_path: Path,
        val_fovs: list[str] | None,
        channel_name: str,
        z_range: tuple[int, int],
        train_exclude_timepoints: list[int],
        train_transforms: list[Callable],
        val_transforms: list[Callable],
        initial_yx_patch_size: tuple[int, int],
        batch_size: int,
        num_workers: int,
        label_column: AnnotationColumns = "infection_state",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.image_path = Path(image_path)
        self.annotation_path = Path(annotation_path)
        if not self.annotation_path.is_file():
            raise FileNotFoundError(f"Annotation CSV not found: {self.annotation_path}")
        self.val_fovs = [name.strip("/") for name in (val_fovs or [])]
        self.channel_name = channel_name
        self.z_range = tuple(z_range)
        self.train_exclude_timepoints = list(train_exclude_timepoints or [])
        self.train_transforms = Compose(list(train_transforms or []))
        self.val_transforms = Compose(list(val_transforms or []))
        self.initial_yx_patch_size = tuple(initial_yx_patch_size)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.label_column = label_column
        self.seed = seed
        if val_fovs is None:
            _logger.warning("val_fovs is None: every FOV is used for training and none for validation.")

    def _read_annotation(self) -> pd.DataFrame:
        annotation = pd.read_csv(self.annotation_path)
        _require_columns(annotation.columns, ["fov_name", "t", "y", "x", self.label_column], "Annotation CSV")
        annotation["fov_name"] = annotation["fov_name"].astype(str).str.strip("/")
        return annotation.astype({"t": int, "y": int, "x": int})

    def _dataset(self, plate: Plate, annotation: pd.DataFrame, transform: Callable | None, **kwargs: Any):
        return ClassificationDataset(
            plate,
            annotation,
            channel_name=self.channel_name,
            z_range=self.z_range,
            transform=transform,
            initial_yx_patch_size=self.initial_yx_patch_size,
            label_column=self.label_column,
            **kwargs,
        )

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets of ``fit``/``validate`` (or None) or ``predict``."""
        if stage == "test":
            raise NotImplementedError("Testing is not supported; use fit, validate or predict.")
        if stage not in (None, "fit", "validate", "predict"):
            raise ValueError(f"Unknown stage {stage!r}; use fit, validate or predict.")
        plate = open_ome_zarr(self.image_path, layout="hcs", mode="r")
        annotation = self._read_annotation()
        if stage == "predict":
            self.predict_dataset = self._dataset(plate, annotation, self.val_transforms, return_indices=True)
            return
        plate_fovs = {fov_name(position) for _, position in plate.positions()}
        unknown = sorted(set(self.val_fovs) - plate_fovs)
        if unknown:
            raise ValueError(f"val_fovs {unknown} are not in the plate; plate FOVs: {sorted(plate_fovs)}.")
        is_val = annotation["fov_name"].isin(self.val_fovs)
        train = annotation[~is_val & ~annotation["t"].isin(self.train_exclude_timepoints)]
        self.train_dataset = self._dataset(plate, train, self.train_transforms)
        self.val_dataset = self._dataset(plate, annotation[is_val], self.val_transforms)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            **_loader_kwargs(self.num_workers, None, self.num_workers > 0, False),
        )

    def train_dataloader(self) -> DataLoader:
        """Return shuffled training batches of ``(B, 1, Z, Y, X)`` patches and ``(B, 1)`` labels."""
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Return validation batches, in order."""
        return self._loader(self.val_dataset, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Return prediction batches with tracking indices, in annotation order."""
        return self._loader(self.predict_dataset, shuffle=False)
