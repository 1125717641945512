"""Tiny Lightning modules and data modules that tests load by ``class_path`` (no pytest needed)."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch import nn
from torch.utils.data import DataLoader, Dataset


class TinyRegressor(LightningModule):
    """A 1x1x1 convolution from source to target channels, for HCS-style ``source``/``target`` batches."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, depth: int = 1, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=1)
        self.example_input_array = torch.zeros(1, in_channels, depth, 16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C, Z, Y, X)`` source patches into ``(-1, 1)``."""
        return torch.sigmoid(self.conv(x)) * 2 - 1

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Return and log the MSE between prediction and ``target``."""
        loss = nn.functional.mse_loss(self(batch["source"]), batch["target"])
        self.log("loss/train", loss, batch_size=batch["source"].shape[0])
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Log the validation MSE as ``loss/val``."""
        loss = nn.functional.mse_loss(self(batch["source"]), batch["target"])
        self.log("loss/val", loss, batch_size=batch["source"].shape[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Return plain SGD."""
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class TinyEmbedder(LightningModule):
    """Pools an ``anchor`` patch into features and projects them, as a contrastive model's predict step does."""

    def __init__(self, in_channels: int = 1, features: int = 8, projections: int = 4) -> None:
        super().__init__()
        self.encoder = nn.Linear(in_channels * 4, features)
        self.projection = nn.Linear(features, projections)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(features, projections)`` of ``(B, C, Z, Y, X)`` patches."""
        pooled = nn.functional.adaptive_avg_pool3d(x, (1, 2, 2)).flatten(1)
        features = self.encoder(pooled)
        return features, self.projection(features)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """Return what :class:`~viscy_utils.callbacks.EmbeddingWriter` writes."""
        features, projections = self(batch["anchor"])
        return {"features": features, "projections": projections, "index": batch["index"]}


class _RandomPairs(Dataset):
    def __init__(self, length: int, shape: tuple[int, ...]) -> None:
        generator = torch.Generator().manual_seed(0)
        self.source = torch.rand((length, *shape), generator=generator)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        return {"source": self.source[index], "target": self.source[index] * 0.5}


class RandomPairsDataModule(LightningDataModule):
    """In-memory random ``source``/``target`` pairs shaped ``(C, Z, Y, X)``."""

    def __init__(self, length: int = 8, batch_size: int = 4, shape: tuple[int, int, int, int] = (1, 1, 16, 16)) -> None:
        super().__init__()
        self.length, self.batch_size, self.shape = length, batch_size, tuple(shape)

    def train_dataloader(self) -> DataLoader:
        """Return the training pairs."""
        return DataLoader(_RandomPairs(self.length, self.shape), batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        """Return the validation pairs (the same pairs)."""
        return DataLoader(_RandomPairs(self.length, self.shape), batch_size=self.batch_size)


class _IndexedCells(Dataset):
    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        anchor = torch.full((1, 1, 4, 4), float(index))
        return {"anchor": anchor, "index": {"fov_name": "/A/1/0", "track_id": index, "t": 0, "id": index}}


class IndexedCellsDataModule(LightningDataModule):
    """Predict batches of constant patches whose value is the cell ``id``, with a tracking ``index``."""

    def __init__(self, length: int = 7, batch_size: int = 2) -> None:
        super().__init__()
        self.length, self.batch_size = length, batch_size

    def predict_dataloader(self) -> DataLoader:
        """Return the cells in ``id`` order."""
        return DataLoader(_IndexedCells(self.length), batch_size=self.batch_size)
