import json

import numpy as np
import pytest
import torch
from monai.transforms import Compose

pytest.importorskip("pycocotools")
tifffile = pytest.importorskip("tifffile")
pytest.importorskip("torchvision")

from viscy_data.livecell import LiveCellDataModule, LiveCellDataset, LiveCellTestDataset  # noqa: E402


@pytest.fixture(scope="module")
def livecell(tmp_path_factory):
    """Three 32x32 TIFFs; image 1 has two square cells, image 2 none."""
    root = tmp_path_factory.mktemp("livecell")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    entries = []
    for image_id, name in enumerate(["a.tif", "b.tif", "c.tif"], start=1):
        tifffile.imwrite(images / name, rng.random((32, 32), dtype=np.float32))
        entries.append({"id": image_id, "file_name": name, "height": 32, "width": 32})
    squares = [(2, 3, 5, 4), (10, 12, 6, 6)]
    annotations = [
        {
            "id": n,
            "image_id": 1,
            "category_id": 1,
            "bbox": [x, y, w, h],
            "area": w * h,
            "iscrowd": 0,
            "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
        }
        for n, (x, y, w, h) in enumerate(squares, start=1)
    ]
    coco = {"images": entries, "annotations": annotations, "categories": [{"id": 1, "name": "cell"}]}
    (root / "all.json").write_text(json.dumps(coco))
    (root / "train.json").write_text(json.dumps({**coco, "images": entries[1:]}))
    (root / "val.json").write_text(json.dumps({**coco, "images": entries[:1]}))
    return root


def test_dataset_reads_and_caches(livecell):
    cache = {}
    dataset = LiveCellDataset([livecell / "images" / "a.tif"], Compose([]), cache)
    (sample,) = dataset[0]
    assert sample["source"].shape == (1, 1, 32, 32)
    assert sample["source"].dtype == torch.float32
    np.testing.assert_array_equal(sample["source"][0, 0].numpy(), tifffile.imread(livecell / "images" / "a.tif"))
    assert list(cache) == [str(livecell / "images" / "a.tif")]


def test_test_dataset_detections_and_transform_result(livecell):
    def replace_source(sample):
        return {**sample, "source": torch.zeros(1, 1, 8, 8)}

    dataset = LiveCellTestDataset(
        livecell / "images", Compose([replace_source]), livecell / "all.json", load_target=True, load_labels=True
    )
    first = dataset[0]
    assert first["source"].shape == (1, 1, 8, 8), "the transform's result is returned"
    assert first["target"].shape == (1, 1, 32, 32)
    detections = first["detections"]
    torch.testing.assert_close(detections["boxes"], torch.tensor([[2.0, 3.0, 7.0, 7.0], [10.0, 12.0, 16.0, 18.0]]))
    assert detections["labels"].dtype == torch.uint8
    assert detections["masks"].shape == (2, 32, 32)
    assert detections["masks"][0, 4, 4]
    assert not detections["masks"][0, 20, 20]
    empty = dataset[1]["detections"]
    assert empty["boxes"].shape == (0, 4)
    assert empty["masks"].shape == (0, 32, 32)
    assert dataset[1]["file_name"] == "b.tif"


def test_datamodule_loaders(livecell):
    dm = LiveCellDataModule(
        train_val_images=livecell / "images",
        test_images=livecell / "images",
        train_annotations=livecell / "train.json",
        val_annotations=livecell / "val.json",
        test_annotations=livecell / "all.json",
        batch_size=2,
        num_workers=0,
        pin_memory=False,
        prefetch_factor=2,
    )
    dm.setup("fit")
    assert [p.name for p in dm.train_dataset.images] == ["b.tif", "c.tif"]
    assert next(iter(dm.train_dataloader()))["source"].shape == (2, 1, 1, 32, 32)
    assert next(iter(dm.val_dataloader()))["source"].shape == (1, 1, 1, 32, 32)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["source"].shape == (2, 1, 1, 32, 32)
    assert [d["boxes"].shape[0] for d in batch["detections"]] == [2, 0]
    with pytest.raises(NotImplementedError):
        dm.setup("predict")


def test_datamodule_validates_paths(livecell):
    with pytest.raises(NotADirectoryError):
        LiveCellDataModule(train_val_images=livecell / "missing")
    with pytest.raises(FileNotFoundError):
        LiveCellDataModule(train_annotations=livecell / "missing.json")
