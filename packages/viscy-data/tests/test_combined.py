from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import Dataset

from viscy_data.combined import (
    BatchedConcatDataModule,
    BatchedConcatDataset,
    CachedConcatDataModule,
    CombinedDataModule,
    CombineMode,
    ConcatDataModule,
    _merge_micro_batches,
)
from viscy_data.distributed import ShardedDistributedSampler
from viscy_data.gpu_aug import CachedOmeZarrDataModule
from viscy_data.hcs import HCSDataModule, SlidingWindowDataset


def _hcs(plate, **kwargs):
    settings = {"z_window_size": 3, "batch_size": 4, "num_workers": 0, "yx_patch_size": (32, 32)}
    settings.update(kwargs)
    return HCSDataModule(plate.store_path, "Phase3D", "GFP", **settings)


def _trainer(**state):
    flags = {"training": False, "validating": False, "testing": False, "predicting": False}
    flags.update(state)
    return SimpleNamespace(**flags)


def test_combined_passes_trainer_and_dispatches_hooks(synthetic_plate):
    flat, two_d = _hcs(synthetic_plate), _hcs(synthetic_plate, target_2d=True)
    combined = CombinedDataModule([flat, two_d], val_mode="sequential")
    assert combined.train_mode == "max_size_cycle"
    assert CombinedDataModule([flat], train_mode=CombineMode.MIN_SIZE).train_mode == "min_size"
    combined.trainer = _trainer(training=True)
    combined.setup("fit")
    assert flat.trainer is combined.trainer
    assert two_d.trainer is combined.trainer
    batch, _, _ = next(iter(combined.train_dataloader()))
    out = combined.on_before_batch_transfer(batch, 0)
    assert out[0]["target"].shape == (4, 1, 3, 32, 32)
    assert out[1]["target"].shape == (4, 1, 1, 32, 32)
    combined.trainer = _trainer(validating=True)
    val_batch = next(iter(two_d.val_dataloader()))
    assert combined.on_before_batch_transfer(val_batch, 1)["target"].shape == (4, 1, 1, 32, 32)
    val_batch = next(iter(flat.val_dataloader()))
    assert combined.on_before_batch_transfer(val_batch, 0)["target"].shape == (4, 1, 3, 32, 32)


def test_concat_checks_stage_before_children(synthetic_plate, tracking_plate):
    first, second = _hcs(synthetic_plate), _hcs(tracking_plate)
    concat = ConcatDataModule([first, second])
    with pytest.raises(NotImplementedError, match="Only fit stage"):
        concat.setup("predict")
    assert not hasattr(first, "predict_dataset")
    concat.trainer = _trainer(training=True)
    concat.setup("fit")
    assert first.trainer is concat.trainer
    assert len(concat.train_dataset) == len(first.train_dataset) + len(second.train_dataset)
    batch = next(iter(concat.train_dataloader()))
    assert batch["source"].shape == (4, 1, 3, 32, 32)
    assert next(iter(concat.val_dataloader()))["target"].shape == (4, 1, 3, 32, 32)


def test_concat_rejects_inconsistent_children(synthetic_plate):
    with pytest.raises(ValueError, match="Inconsistent batch size"):
        ConcatDataModule([_hcs(synthetic_plate), _hcs(synthetic_plate, batch_size=8)])
    with pytest.raises(ValueError, match="Inconsistent number of workers"):
        ConcatDataModule([_hcs(synthetic_plate), _hcs(synthetic_plate, num_workers=1)])


def test_merge_micro_batches_handles_dicts_lists_and_none():
    merged = _merge_micro_batches(
        [
            {"x": torch.zeros(2, 3), "meta": {"a": {"m": torch.zeros(2)}}, "index": [1, 2], "none": None},
            {"x": torch.ones(1, 3), "meta": {"a": {"m": torch.ones(1)}}, "index": [3], "none": None},
        ]
    )
    assert merged["x"].shape == (3, 3)
    assert merged["meta"]["a"]["m"].tolist() == [0.0, 0.0, 1.0]
    assert merged["index"] == [1, 2, 3]
    assert merged["none"] is None
    with pytest.raises(ValueError, match="different keys"):
        _merge_micro_batches([{"x": torch.zeros(1)}, {"y": torch.zeros(1)}])


class _Items(Dataset):
    def __init__(self, offset, size=3):
        self.offset, self.size = offset, size

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        return {"value": torch.tensor([self.offset + index])}


def test_batched_concat_dataset_groups_and_falls_back_to_items(synthetic_plate):
    dataset = BatchedConcatDataset([_Items(0), _Items(10)])
    assert dataset._get_sample_indices(-1) == (1, 2)
    micro = dataset.__getitems__([4, 0, 5, 1])
    assert [m["_dataset_idx"] for m in micro] == [1, 0]
    assert micro[0]["value"].flatten().tolist() == [11, 12]
    with pytest.raises(NotImplementedError):
        dataset[0]
    dm = _hcs(synthetic_plate)
    dm.setup("fit")
    assert isinstance(dm.val_dataset, SlidingWindowDataset)
    sliding = BatchedConcatDataset([dm.val_dataset])
    assert sliding.__getitems__([0, 1])[0]["source"].shape == (2, 1, 3, 32, 32)


def test_batched_concat_of_triplet_modules(tracking_plate, plate_factory, stage_trainer):
    pytest.importorskip("tensorstore")
    from viscy_data.triplet import TripletDataModule

    other = plate_factory(n_frames=3, z_slices=7, yx_size=(96, 96), cells_per_fov=6, well_conditions={"C/3": "x"})
    children = [
        TripletDataModule(
            plate.store_path,
            plate.tracks_path,
            ["Phase3D", "GFP"],
            z_range=(1, 6),
            initial_yx_patch_size=(32, 32),
            final_yx_patch_size=(24, 24),
            batch_size=6,
            num_workers=0,
            split_ratio=0.5,
            time_interval=1,
        )
        for plate in (tracking_plate, other)
    ]
    dm = BatchedConcatDataModule(children)
    dm.trainer = stage_trainer("train")
    dm.setup("fit")
    assert all(child.trainer is dm.trainer for child in children)
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, list)
    assert {micro["_dataset_idx"] for micro in batch} <= {0, 1}
    merged = dm.on_after_batch_transfer(batch, 0)
    assert merged["anchor"].shape == (6, 2, 5, 24, 24)
    assert "anchor_norm_meta" not in merged


def test_cached_concat_lists_items_and_shards_under_ddp(synthetic_plate, monkeypatch):
    def cached(wells):
        return CachedOmeZarrDataModule(
            synthetic_plate.store_path, ["GFP"], 2, 0, 0.5, [], [], [], [], pin_memory=False, include_wells=wells
        )

    dm = CachedConcatDataModule([cached(["A/1"]), cached(["B/2"])])
    dm.setup("fit")
    assert len(dm.train_dataset) == 2 * 4
    batch = next(iter(dm.train_dataloader()))
    assert len(batch) == 2
    assert batch[0][0]["GFP"].shape == (1, 5, 64, 64)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 1)
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, ShardedDistributedSampler)
    assert sorted(loader.sampler) == [4, 5, 6, 7]


def test_cached_module_and_its_concatenation_build_one_kind_of_sharded_loader(synthetic_plate, monkeypatch):
    from monai.data.utils import list_data_collate, no_collation

    child = CachedOmeZarrDataModule(
        synthetic_plate.store_path, ["GFP"], 2, 0, 0.5, [], [], [], [], pin_memory=False, include_wells=["A/1"]
    )
    concat = CachedConcatDataModule([child])
    concat.setup("fit")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 0)
    for module, collate, drop_last in ((child, list_data_collate, False), (concat, no_collation, True)):
        loader = module.train_dataloader()
        assert isinstance(loader.sampler, ShardedDistributedSampler)
        assert loader.collate_fn is collate
        assert loader.drop_last is drop_last
        assert loader.batch_size == 2
