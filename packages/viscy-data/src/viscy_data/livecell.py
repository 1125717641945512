"""The LIVECell phase-contrast dataset: TIFF images with COCO instance annotations.

Needs the ``[livecell]`` extra (pycocotools, tifffile, torchvision).
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping, Sequence
from multiprocessing import Manager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import Compose, MapTransform
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate

from viscy_data._optional import require_modules
from viscy_data._typing import Sample
from viscy_data._utils import _loader_kwargs
from viscy_data.gpu_aug import GPUTransformDataModule, _compose

__all__ = ["LiveCellDataModule", "LiveCellDataset", "LiveCellTestDataset"]

_LIVECELL_MODULES = ("pycocotools.coco", "tifffile", "torchvision.ops")


def _livecell_modules(feature: str) -> tuple[Any, Any, Any]:
    """Import ``(pycocotools.coco, tifffile, torchvision.ops)`` or fail naming the missing ones."""
    coco, tifffile, ops = require_modules(_LIVECELL_MODULES, extra="livecell", feature=feature)
    return coco, tifffile, ops


def _read_image(tifffile: Any, path: Path) -> Tensor:
    """Read a single-page TIFF as a ``(1, 1, Y, X)`` float32 tensor."""
    return torch.from_numpy(np.asarray(tifffile.imread(path), dtype=np.float32))[None, None]


class LiveCellDataset(Dataset):
    """Training or validation images, cached in a mapping shared by workers.

    Parameters
    ----------
    images : list[Path]
        TIFF files.
    transform : Compose
        Applied to ``{"source": (1, 1, Y, X)}``.
    cache_map : MutableMapping
        Image cache keyed by file path.
    """

    def __init__(self, images: list[Path], transform: Compose, cache_map: MutableMapping) -> None:
        _, self._tifffile, _ = _livecell_modules("LiveCellDataset")
        super().__init__()
        self.images = list(images)
        self.transform = transform
        self.cache_map = cache_map

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> list[Sample]:
        key = str(self.images[index])
        image = self.cache_map.get(key)
        if image is None:
            image = _read_image(self._tifffile, self.images[index])
            self.cache_map[key] = image
        sample = self.transform(Sample(source=image))
        return sample if isinstance(sample, list) else [sample]


class LiveCellTestDataset(Dataset):
    """Test images with their COCO annotations.

    Parameters
    ----------
    image_dir : Path
        Directory of the TIFF files.
    transform : Compose
        Applied to each sample; its result is returned.
    annotations : Path
        COCO JSON file.
    load_target : bool
        Also return the image as ``target``.
    load_labels : bool
        Also return ``detections`` (``boxes`` xyxy ``(N, 4)``, ``labels`` ``(N,)`` uint8,
        ``masks`` ``(N, Y, X)`` bool) and ``file_name``.
    """

    def __init__(
        self,
        image_dir: Path,
        transform: Compose,
        annotations: Path,
        load_target: bool = False,
        load_labels: bool = False,
    ) -> None:
        coco_module, self._tifffile, self._ops = _livecell_modules("LiveCellTestDataset")
        super().__init__()
        self.image_dir = Path(image_dir)
        self.transform = transform
        self.coco = coco_module.COCO(str(annotations))
        self.image_ids = list(self.coco.imgs.keys())
        self.load_target = load_target
        self.load_labels = load_labels

    def __len__(self) -> int:
        return len(self.image_ids)

    def _detections(self, image_id: int, height: int, width: int) -> dict[str, Tensor]:
        annotations = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id]))
        boxes = torch.tensor([a["bbox"] for a in annotations], dtype=torch.float32).reshape(-1, 4)
        masks = [torch.from_numpy(self.coco.annToMask(a).astype(bool)) for a in annotations]
        return {
            "boxes": self._ops.box_convert(boxes, in_fmt="xywh", out_fmt="xyxy"),
            "labels": torch.zeros(len(annotations), dtype=torch.uint8),
            "masks": torch.stack(masks) if masks else torch.zeros((0, height, width), dtype=torch.bool),
        }

    def __getitem__(self, index: int) -> Sample:
        image_id = self.image_ids[index]
        file_name = self.coco.imgs[image_id]["file_name"]
        image = _read_image(self._tifffile, self.image_dir / file_name)
        sample: dict[str, Any] = {"source": image}
        if self.load_target:
            sample["target"] = image
        if self.load_labels:
            sample["detections"] = self._detections(image_id, *image.shape[-2:])
            sample["file_name"] = file_name
        return self.transform(sample)


def _collate_test_samples(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack images; keep per-image detections and file names as lists."""
    ragged = ("detections", "file_name")
    collated = default_collate([{k: v for k, v in sample.items() if k not in ragged} for sample in batch])
    for key in ragged:
        if key in batch[0]:
            collated[key] = [sample[key] for sample in batch]
    return collated


class LiveCellDataModule(GPUTransformDataModule):
    """LIVECell training/validation images and annotated test images.

    Where a batch is read, normalized and augmented: a worker process reads each TIFF once
    (and caches it in a ``Manager`` dict) and runs the per-sample CPU transforms on it; the
    per-batch GPU transforms run after transfer (see
    :class:`~viscy_data.gpu_aug.GPUTransformDataModule`). Test images get ``test_transforms``
    per sample only.

    Parameters
    ----------
    train_val_images : Path, optional
        Directory of the training and validation TIFFs.
    test_images : Path, optional
        Directory of the test TIFFs.
    train_annotations, val_annotations, test_annotations : Path, optional
        COCO JSON files; the first two select the training and validation images.
    train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms : list[MapTransform], optional
        Transform pipelines, as in :meth:`~viscy_data.gpu_aug.GPUTransformDataModule._set_transforms`.
    test_transforms : list[MapTransform], optional
        Per-sample test transforms.
    batch_size, num_workers, pin_memory, prefetch_factor, seed
        Loader settings, as in :meth:`~viscy_data.gpu_aug.GPUTransformDataModule._set_loader_settings`.
    """

    def __init__(
        self,
        train_val_images: Path | None = None,
        test_images: Path | None = None,
        train_annotations: Path | None = None,
        val_annotations: Path | None = None,
        test_annotations: Path | None = None,
        train_cpu_transforms: list[MapTransform] | None = None,
        val_cpu_transforms: list[MapTransform] | None = None,
        train_gpu_transforms: list[MapTransform] | None = None,
        val_gpu_transforms: list[MapTransform] | None = None,
        test_transforms: list[MapTransform] | None = None,
        batch_size: int = 16,
        num_workers: int = 8,
        pin_memory: bool = True,
        prefetch_factor: int | None = None,
        seed: int = 0,
    ) -> None:
        _livecell_modules("LiveCellDataModule")
        super().__init__()
        self._set_loader_settings(batch_size, num_workers, pin_memory, prefetch_factor, seed)
        self._set_transforms(train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms)
        self.train_val_images = _existing(train_val_images, directory=True)
        self.test_images = _existing(test_images, directory=True)
        self.train_annotations = _existing(train_annotations, directory=False)
        self.val_annotations = _existing(val_annotations, directory=False)
        self.test_annotations = _existing(test_annotations, directory=False)
        self.test_transforms = _compose(test_transforms)

    def _annotated_images(self, annotations: Path | None, role: str) -> list[Path]:
        if annotations is None or self.train_val_images is None:
            raise ValueError(f"Fitting needs train_val_images and {role}_annotations.")
        images = json.loads(annotations.read_text())["images"]
        return [self.train_val_images / name for name in sorted(image["file_name"] for image in images)]

    def setup(self, stage: str | None) -> None:
        """Build the datasets of ``fit``/``validate`` or ``test``."""
        if stage in ("fit", "validate"):
            self._manager = Manager()
            cache_map = self._manager.dict()
            self.train_dataset = LiveCellDataset(
                self._annotated_images(self.train_annotations, "train"), self.train_cpu_transforms, cache_map
            )
            self.val_dataset = LiveCellDataset(
                self._annotated_images(self.val_annotations, "val"), self.val_cpu_transforms, cache_map
            )
        elif stage == "test":
            if self.test_images is None or self.test_annotations is None:
                raise ValueError("Testing needs test_images and test_annotations.")
            self.test_dataset = LiveCellTestDataset(
                self.test_images, self.test_transforms, self.test_annotations, load_labels=True
            )
        else:
            raise NotImplementedError(f"Stage {stage!r} is not supported; use fit, validate or test.")

    def test_dataloader(self) -> DataLoader:
        """Return test batches; detections stay one entry per image."""
        return DataLoader(
            self.test_dataset,
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=_collate_test_samples,
            **_loader_kwargs(self.num_workers, self.prefetch_factor, False, self.pin_memory),
        )


def _existing(path: Path | str | None, directory: bool) -> Path | None:
    """Return ``path`` as a Path after checking that it exists as a directory or a file."""
    if path is None:
        return None
    path = Path(path)
    if directory and not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory.")
    if not directory and not path.is_file():
        raise FileNotFoundError(f"{path} is not a file.")
    return path
