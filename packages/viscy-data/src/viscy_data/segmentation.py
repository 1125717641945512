"""Pairs of predicted and ground-truth segmentations for evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from iohub.ngff import Plate
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from viscy_data._typing import SegmentationSample
from viscy_data._utils import _channel_indices, _loader_kwargs
from viscy_data.ome_compat import open_ome_zarr
from viscy_data.read_errors import naming_read_errors

__all__ = ["SegmentationDataModule", "SegmentationDataset"]


class SegmentationDataset(Dataset):
    """One item per target FOV and time point: predicted and target label images.

    Parameters
    ----------
    pred_dataset : Plate
        Plate of predicted segmentations.
    target_dataset : Plate
        Plate of ground-truth segmentations, with the same FOV names.
    pred_channel, target_channel : str
        Channels holding the label images.
    pred_z_slice, target_z_slice : int or slice
        Z slice(s) to read.
    img_name : str
        Image array to read.
    """

    def __init__(
        self,
        pred_dataset: Plate,
        target_dataset: Plate,
        pred_channel: str,
        target_channel: str,
        pred_z_slice: int | slice,
        target_z_slice: int | slice,
        img_name: str = "0",
    ) -> None:
        super().__init__()
        self.pred_dataset = pred_dataset
        self.target_dataset = target_dataset
        self.pred_channel = _channel_indices(pred_dataset.channel_names, [pred_channel])[0]
        self.target_channel = _channel_indices(target_dataset.channel_names, [target_channel])[0]
        self.pred_z_slice = pred_z_slice
        self.target_z_slice = target_z_slice
        self.img_name = img_name
        predicted = dict(pred_dataset.positions())
        self._items: list[tuple[int, str, int]] = []
        self._pairs = []
        for position_index, (name, target) in enumerate(target_dataset.positions()):
            if name not in predicted:
                raise ValueError(f"FOV {name} has no prediction; predicted FOVs: {sorted(predicted)}.")
            target_image, pred_image = target[img_name], predicted[name][img_name]
            if target_image.frames != pred_image.frames:
                raise ValueError(
                    f"FOV {name}: {pred_image.frames} predicted time points but {target_image.frames} targets."
                )
            self._pairs.append((pred_image, target_image))
            self._items.extend((position_index, name, t) for t in range(target_image.frames))

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> SegmentationSample:
        position_index, _, t = self._items[index]
        pred_image, target_image = self._pairs[position_index]
        with naming_read_errors(pred_image, time_point=t):
            pred = np.asarray(pred_image[t, self.pred_channel, self.pred_z_slice]).astype(np.int16)
        with naming_read_errors(target_image, time_point=t):
            target = np.asarray(target_image[t, self.target_channel, self.target_z_slice]).astype(np.int16)
        return {
            "pred": torch.from_numpy(pred),
            "target": torch.from_numpy(target),
            "position_idx": position_index,
            "time_idx": t,
        }


class SegmentationDataModule(LightningDataModule):
    """Test-stage data comparing predicted and ground-truth segmentations.

    The stores are opened in :meth:`setup`, not at construction.

    Parameters
    ----------
    pred_dataset, target_dataset : Path
        HCS OME-Zarr plates of predictions and ground truth.
    pred_channel, target_channel : str
        Channels holding the label images.
    pred_z_slice, target_z_slice : int
        Z slice to compare.
    batch_size : int
        Items per batch.
    num_workers : int
        Data loading worker processes.
    """

    def __init__(
        self,
        pred_dataset: Path,
        target_dataset: Path,
        pred_channel: str,
        target_channel: str,
        pred_z_slice: int,
        target_z_slice: int,
        batch_size: int,
        num_workers: int,
    ) -> None:
        super().__init__()
        self.pred_dataset = Path(pred_dataset)
        self.target_dataset = Path(target_dataset)
        for path in (self.pred_dataset, self.target_dataset):
            if not path.exists():
                raise FileNotFoundError(f"OME-Zarr store not found: {path}")
        self.pred_channel = pred_channel
        self.target_channel = target_channel
        self.pred_z_slice = pred_z_slice
        self.target_z_slice = target_z_slice
        self.batch_size = batch_size
        self.num_workers = num_workers

    def setup(self, stage: str | None) -> None:
        """Open both plates and pair their FOVs (test stage only)."""
        if stage != "test":
            raise NotImplementedError(f"Stage {stage!r} is not supported; only test is.")
        self.test_dataset = SegmentationDataset(
            open_ome_zarr(self.pred_dataset, layout="hcs", mode="r"),
            open_ome_zarr(self.target_dataset, layout="hcs", mode="r"),
            self.pred_channel,
            self.target_channel,
            self.pred_z_slice,
            self.target_z_slice,
        )

    def test_dataloader(self) -> DataLoader:
        """Return test batches, in order."""
        settings = _loader_kwargs(self.num_workers, None, False, False)
        return DataLoader(self.test_dataset, batch_size=self.batch_size, **settings)
