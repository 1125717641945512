"""The CTMC-v1 cell tracking data: separate training and validation HCS stores, one channel."""

from __future__ import annotations

from multiprocessing import Manager
from pathlib import Path

from monai.data import set_track_meta
from monai.transforms import Compose, MapTransform
from torch.utils.data import Subset

from viscy_data._utils import _validate_store_channels
from viscy_data.gpu_aug import CachedOmeZarrDataset, GPUTransformDataModule
from viscy_data.ome_compat import open_ome_zarr

__all__ = ["CTMCv1DataModule"]


class CTMCv1DataModule(GPUTransformDataModule):
    """Autoregression data from the CTMC-v1 training and validation stores.

    Where a batch is read, normalized and augmented: every FOV time point of each store is one
    item, read whole by a worker process (and cached in a ``Manager`` dict) that runs the
    per-sample CPU transforms on it; the per-batch GPU transforms run after transfer (see
    :class:`~viscy_data.gpu_aug.GPUTransformDataModule`). No normalization metadata is read.

    Parameters
    ----------
    train_data_path : str or Path
        HCS OME-Zarr store of the training movies.
    val_data_path : str or Path
        HCS OME-Zarr store of the validation movies.
    train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms : list[MapTransform]
        Transform pipelines, as in :meth:`~viscy_data.gpu_aug.GPUTransformDataModule._set_transforms`.
    batch_size, num_workers, pin_memory, prefetch_factor, seed
        Loader settings, as in :meth:`~viscy_data.gpu_aug.GPUTransformDataModule._set_loader_settings`.
    val_subsample_ratio : int
        Keep every n-th validation item.
    channel_name : str
        The channel to read.
    """

    def __init__(
        self,
        train_data_path: str | Path,
        val_data_path: str | Path,
        train_cpu_transforms: list[MapTransform],
        val_cpu_transforms: list[MapTransform],
        train_gpu_transforms: list[MapTransform],
        val_gpu_transforms: list[MapTransform],
        batch_size: int = 16,
        num_workers: int = 8,
        val_subsample_ratio: int = 30,
        channel_name: str = "DIC",
        pin_memory: bool = True,
        prefetch_factor: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self._set_loader_settings(batch_size, num_workers, pin_memory, prefetch_factor, seed)
        self._set_transforms(train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms)
        self.train_data_path = Path(train_data_path)
        self.val_data_path = Path(val_data_path)
        if val_subsample_ratio < 1:
            raise ValueError(f"val_subsample_ratio must be at least 1, got {val_subsample_ratio}.")
        self.val_subsample_ratio = val_subsample_ratio
        self.channel_names = [channel_name]
        for path in (self.train_data_path, self.val_data_path):
            _validate_store_channels(path, self.channel_names)

    def _dataset(self, path: Path, transform: Compose) -> CachedOmeZarrDataset:
        plate = open_ome_zarr(path, layout="hcs", mode="r")
        return CachedOmeZarrDataset(
            [position for _, position in plate.positions()],
            channel_names=self.channel_names,
            cache_map=self._manager.dict(),
            transform=transform,
            load_normalization_metadata=False,
        )

    def setup(self, stage: str | None) -> None:
        """Build the training dataset and the subsampled validation dataset (fit only)."""
        if stage != "fit":
            raise NotImplementedError(f"Stage {stage!r} is not supported; only fit is.")
        set_track_meta(False)
        self._manager = Manager()
        self.train_dataset = self._dataset(self.train_data_path, self.train_cpu_transforms)
        full_val = self._dataset(self.val_data_path, self.val_cpu_transforms)
        self.val_dataset = Subset(full_val, range(0, len(full_val), self.val_subsample_ratio))
