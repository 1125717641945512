"""INTG-01/02: multi-experiment training through the real CLI, under 2-process DDP, resumed mid-epoch."""

from __future__ import annotations

import copy
import json
import logging
import os
import textwrap
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
import yaml
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from dynaclr.datamodule import MultiExperimentDataModule
from dynaclr.engine import ContrastiveModule
from dynaclr.loss import NTXentHCL
from viscy_data import FlexibleBatchSampler
from viscy_transforms import BatchedRandAffined, BatchedRandGaussianNoised
from viscy_utils.testing.fixtures import run_command

from .conftest import CONFIGS, FIXTURES, cpu_trainer

MULTI_FIT = [str(CONFIGS / "multi_experiment_fit.yml"), str(CONFIGS / "multi_experiment_fit_synthetic_cpu.yml")]
COMMITTED_EXPERIMENTS = f"--data.init_args.experiments_yaml={CONFIGS / 'experiments.yml'}"


def _config_args(paths: list[str]) -> list[str]:
    return [argument for path in paths for argument in ("-c", path)]


@pytest.mark.slow
def test_multi_experiment_fit_yml_fast_dev_run(experiments_workdir, dynaclr):
    """INTG-01: the committed config with every sampling axis on trains on the example experiments."""
    config = yaml.safe_load((CONFIGS / "multi_experiment_fit.yml").read_text())["data"]["init_args"]
    assert config["experiment_aware"]
    assert config["condition_balanced"]
    assert config["temporal_enrichment"]
    assert config["leaky"] > 0
    assert config["channel_dropout_prob"] > 0
    dynaclr("fit", *_config_args(MULTI_FIT), COMMITTED_EXPERIMENTS, "--trainer.fast_dev_run=true")


@pytest.mark.slow
def test_reference_multi_experiment_fit_yml_trains(experiments_workdir, dynaclr):
    """The reference's config, TODOs filled in, per-sample MONAI transforms and all, trains and validates."""
    dynaclr(
        "fit",
        "-c",
        str(FIXTURES / "reference_multi_experiment_fit.yml"),
        "-c",
        str(CONFIGS / "multi_experiment_fit_synthetic_cpu.yml"),
        "--trainer.fast_dev_run=true",
    )


class _TinyEncoder(nn.Module):
    """Pooled patches -> (features, projections): fast enough for many steps on a CPU."""

    def __init__(self, in_channels: int = 2) -> None:
        super().__init__()
        self.features = nn.Linear(in_channels * 8, 8)
        self.projection = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(nn.functional.adaptive_avg_pool3d(x, (1, 2, 4)).flatten(1))
        return features, self.projection(features)


def _module() -> ContrastiveModule:
    return ContrastiveModule(
        encoder=_TinyEncoder(),
        loss_function=NTXentHCL(),
        log_batches_per_epoch=0,
        example_input_array_shape=(1, 2, 5, 32, 32),
    )


def _datamodule(**kwargs) -> MultiExperimentDataModule:
    settings = {
        "experiments_yaml": "synthetic/experiments/experiments.yml",
        "z_range": (0, 5),
        "yx_patch_size": (48, 48),
        "final_yx_patch_size": (32, 32),
        "val_experiments": ["2025_08_15_TOMM20"],
        "batch_size": 16,
        "num_workers": 2,
        "leaky": 0.1,
        "temporal_enrichment": True,
        "channel_dropout_prob": 0.0,
        "seed": 3,
    }
    return MultiExperimentDataModule(**{**settings, **kwargs})


def _augmented_datamodule(**kwargs) -> MultiExperimentDataModule:
    """A datamodule with random augmentations and channel dropout, each built afresh."""
    augmentations = [
        BatchedRandAffined(keys=["ch_0", "ch_1"], prob=0.8, rotate_range=[3.14, 0.0, 0.0]),
        BatchedRandGaussianNoised(keys=["ch_0", "ch_1"], prob=0.5, std=0.1),
    ]
    settings = {"augmentations": augmentations, "channel_dropout_channels": [1], "channel_dropout_prob": 0.5}
    return _datamodule(**{**settings, **kwargs})


class _RecordBatches(Callback):
    """Per training step, the anchor and positive patches the step received (after transfer)."""

    def __init__(self) -> None:
        self.steps: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.steps.append((batch["anchor"].clone(), batch["positive"].clone()))


@pytest.mark.slow
def test_resumed_mid_epoch_run_trains_on_exactly_the_rest_of_the_epoch(experiments_workdir):
    """A run stopped after k steps and resumed from its checkpoint sees the uninterrupted run's steps k..n."""
    uninterrupted = _RecordBatches()
    cpu_trainer(experiments_workdir / "a", max_epochs=1, limit_val_batches=0, callbacks=[uninterrupted]).fit(
        _module(), _augmented_datamodule()
    )
    n_steps = len(uninterrupted.steps)
    assert n_steps >= 6
    stop_at = n_steps // 2
    checkpoint = ModelCheckpoint(dirpath=experiments_workdir / "ckpt", every_n_train_steps=stop_at, save_top_k=-1)
    first_part = _RecordBatches()
    cpu_trainer(
        experiments_workdir / "b",
        max_steps=stop_at,
        limit_val_batches=0,
        enable_checkpointing=True,
        callbacks=[checkpoint, first_part],
    ).fit(_module(), _augmented_datamodule())
    (saved,) = (experiments_workdir / "ckpt").glob("*.ckpt")
    assert torch.load(saved, weights_only=False)["MultiExperimentDataModule"]["sampler"]["batches_yielded"] == stop_at
    rest = _RecordBatches()
    cpu_trainer(experiments_workdir / "c", max_epochs=1, limit_val_batches=0, callbacks=[rest]).fit(
        _module(), _augmented_datamodule(), ckpt_path=saved
    )
    assert len(first_part.steps) == stop_at
    assert len(rest.steps) == n_steps - stop_at
    for seen, expected in zip(first_part.steps + rest.steps, uninterrupted.steps, strict=True):
        torch.testing.assert_close(seen[0], expected[0], rtol=0, atol=0)
        torch.testing.assert_close(seen[1], expected[1], rtol=0, atol=0)


def _started_training(global_rank: int, seed: int = 3) -> tuple[MultiExperimentDataModule, dict]:
    """An augmented datamodule of a 2-rank run that has started its first epoch, and its first raw batch."""
    datamodule = _augmented_datamodule(seed=seed)
    datamodule.trainer = SimpleNamespace(world_size=2, global_rank=global_rank, training=True, sanity_checking=False)
    datamodule.setup("fit")
    return datamodule, next(iter(datamodule.train_dataloader()))


@pytest.mark.slow
def test_only_the_region_the_augmentations_can_sample_is_read_and_training_batches_stay_the_same(
    experiments_workdir, monkeypatch, caplog
):
    """The affine rotating 32x32 by up to pi samples within 46x46 of the 48x48 patch: 46x46 is read, same batches."""
    with caplog.at_level(logging.INFO, logger="dynaclr.datamodule"):
        shrunk, raw = _started_training(global_rank=0)
    assert raw["anchor"].shape[-2:] == (46, 46)
    assert "Reading (46, 46) around each cell instead of yx_patch_size (48, 48)" in caplog.text
    monkeypatch.setattr("dynaclr.datamodule.smallest_read_yx", lambda pipeline, configured, z: tuple(configured))
    configured, configured_raw = _started_training(global_rank=0)
    assert configured_raw["anchor"].shape[-2:] == (48, 48)
    torch.testing.assert_close(raw["anchor"], configured_raw["anchor"][..., 1:47, 1:47], rtol=0, atol=0)
    expected = configured.on_after_batch_transfer(configured_raw, 0)
    actual = shrunk.on_after_batch_transfer(raw, 0)
    for key in ("anchor", "positive"):
        # the fused affine samples the same points from either read: float32 rounding of the sampling
        # coordinates only (measured 4.4e-5 at 384 -> 160 in viscy-transforms' tests)
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=2e-4)


@pytest.mark.slow
def test_training_draws_depend_on_the_seed_and_rank_only(experiments_workdir):
    """Augmentations and channel dropout of a batch: same seed and rank, same draws, whatever else drew before."""
    torch.manual_seed(0)
    datamodule, raw = _started_training(global_rank=0)
    first = datamodule.on_after_batch_transfer(copy.deepcopy(raw), 0)
    assert not torch.equal(first["anchor"][:, :, :, 8:40, 8:40], raw["anchor"][:, :, :, 8:40, 8:40])

    def augmented(global_rank: int, seed: int = 3) -> dict:
        torch.manual_seed(global_rank + seed + 100)  # another global RNG state than the first run's
        other, _ = _started_training(global_rank, seed)
        return other.on_after_batch_transfer(copy.deepcopy(raw), 0)

    again = augmented(global_rank=0)
    for key in ("anchor", "positive"):
        torch.testing.assert_close(again[key], first[key], rtol=0, atol=0)
    assert not torch.equal(augmented(global_rank=1)["anchor"], first["anchor"])
    assert not torch.equal(augmented(global_rank=0, seed=4)["anchor"], first["anchor"])


class _RecordStages(Callback):
    """Batches of the training and validation steps of a short run."""

    def __init__(self) -> None:
        self.train: list[dict] = []
        self.val: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.train.append({key: value.clone() for key, value in batch.items()})

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self.val.append({key: value.clone() for key, value in batch.items()})


@pytest.mark.slow
def test_validation_batches_are_neither_augmented_nor_channel_dropped(experiments_workdir):
    """Training batches get the augmentation and ChannelDropout; validation batches get neither."""
    from viscy_transforms import BatchedRandGaussianNoised

    noise = BatchedRandGaussianNoised(keys=["ch_0", "ch_1"], prob=1.0, mean=0.0, std=50.0)
    datamodule = _datamodule(augmentations=[noise], channel_dropout_prob=1.0, channel_dropout_channels=[1])
    record = _RecordStages()
    cpu_trainer(
        experiments_workdir,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=2,
        num_sanity_val_steps=0,
        callbacks=[record],
    ).fit(_module(), datamodule)
    assert len(record.train) == 2
    assert len(record.val) == 2
    for batch in record.train:
        for key in ("anchor", "positive"):
            assert batch[key].shape[1:] == (2, 5, 32, 32)
            assert torch.count_nonzero(batch[key][:, 1]) == 0
            assert batch[key][:, 0].std() > 10
    for batch in record.val:
        for key in ("anchor", "positive"):
            assert torch.count_nonzero(batch[key][:, 1]) > 0
            assert batch[key][:, 0].std() < 10


class _CollectPredictions(Callback):
    def __init__(self) -> None:
        self.index: list[dict] = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.index.extend(outputs["index"])


def test_predict_stage_embeds_every_cell_of_the_chosen_experiments_in_order(experiments_workdir):
    """DATA-06: predict covers every tracked cell of predict_experiments once, in index order."""
    datamodule = _datamodule(predict_experiments=["2025_08_15_TOMM20", "2025_09_03_SEC61"], batch_size=32)
    collect = _CollectPredictions()
    cpu_trainer(experiments_workdir, callbacks=[collect]).predict(_module(), datamodule, return_predictions=False)
    tracks = datamodule.predict_dataset.index.tracks
    assert len(collect.index) == len(tracks)
    assert [row["experiment"] for row in collect.index] == tracks["experiment"].astype(str).tolist()
    assert [(row["fov_name"], row["track_id"], row["t"]) for row in collect.index] == list(
        zip(tracks["fov_name"], tracks["track_id"], tracks["t"], strict=True)
    )
    assert {row["experiment"] for row in collect.index} == {"2025_08_15_TOMM20", "2025_09_03_SEC61"}


def test_datamodule_rejects_bad_experiment_splits(experiments_workdir):
    """val_experiments must name known experiments and leave some to train on."""
    with pytest.raises(ValueError, match="not in"):
        _datamodule(val_experiments=["nope"]).setup("fit")
    every = ["2025_07_22_SEC61", "2025_08_15_TOMM20", "2025_09_03_SEC61"]
    with pytest.raises(ValueError, match="No training experiments remaining"):
        _datamodule(val_experiments=every).setup("fit")
    with pytest.raises(ValueError, match="final_yx_patch_size"):
        _datamodule(final_yx_patch_size=(64, 64))


def test_hcl_beta_of_the_reference_config_loads_silently_and_another_value_names_ntxenthcl(recwarn):
    """hcl_beta did nothing in the reference: its 0.5 loads, any other value points to the loss's beta."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--data", type=MultiExperimentDataModule)
    reference = yaml.safe_load((FIXTURES / "reference_multi_experiment_fit.yml").read_text())["data"]
    assert reference["init_args"]["hcl_beta"] == 0.5
    datamodule = parser.instantiate(parser.parse_object({"data": reference})).data
    assert isinstance(datamodule, MultiExperimentDataModule)
    assert not [w for w in recwarn.list if "hcl_beta" in str(w.message)]
    with pytest.raises(ValueError, match=r"hcl_beta=0\.7 is not supported.*dynaclr\.loss\.NTXentHCL\(beta=\.\.\.\)"):
        _datamodule(hcl_beta=0.7)


DDP_SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    from pathlib import Path

    from lightning.pytorch import Callback, Trainer

    from dynaclr.dataset import MultiExperimentTripletDataset
    from dynaclr.datamodule import MultiExperimentDataModule
    from dynaclr.engine import ContrastiveModule
    from dynaclr.loss import NTXentHCL
    from ddp_encoder import TinyEncoder

    read = []
    getitems = MultiExperimentTripletDataset.__getitems__

    def recording(self, indices):
        if self.fit and len(self.index.registry.experiments) > 1:
            read.append([self.epoch, [int(i) for i in indices]])
        return getitems(self, indices)

    MultiExperimentTripletDataset.__getitems__ = recording

    class Dump(Callback):
        def on_train_end(self, trainer, pl_module):
            Path(f"rank{trainer.global_rank}.json").write_text(
                json.dumps({"world_size": trainer.world_size, "batches": read, "len": len(trainer.train_dataloader)})
            )

    datamodule = MultiExperimentDataModule(**json.loads(sys.argv[1]))
    model = ContrastiveModule(
        encoder=TinyEncoder(), loss_function=NTXentHCL(), log_batches_per_epoch=0,
        example_input_array_shape=(1, 2, 5, 32, 32),
    )
    trainer = Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        use_distributed_sampler=False, callbacks=[Dump()],
    )
    trainer.fit(model, datamodule)
    """
)

ENCODER_MODULE = textwrap.dedent(
    """
    from torch import nn

    class TinyEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Linear(16, 8)
            self.projection = nn.Linear(8, 4)

        def forward(self, x):
            features = self.features(nn.functional.adaptive_avg_pool3d(x, (1, 2, 4)).flatten(1))
            return features, self.projection(features)
    """
)


DDP_DATA = {
    "experiments_yaml": "synthetic/experiments/experiments.yml",
    "z_range": [0, 5],
    "yx_patch_size": [48, 48],
    "final_yx_patch_size": [32, 32],
    "val_experiments": ["2025_08_15_TOMM20"],
    "batch_size": 16,
    "leaky": 0.1,
    "temporal_enrichment": True,
    "seed": 1,
}


@pytest.mark.slow
def test_two_process_ddp_ranks_read_disjoint_batches_and_epochs_differ(experiments_workdir):
    """Under 2-process DDP each rank reads its own shard of every epoch, and epoch 2 differs from epoch 1."""
    (experiments_workdir / "train_ddp.py").write_text(DDP_SCRIPT)
    (experiments_workdir / "ddp_encoder.py").write_text(ENCODER_MODULE)
    result = run_command("train_ddp", json.dumps(DDP_DATA), cwd=experiments_workdir, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((experiments_workdir / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert all(rank["world_size"] == 2 for rank in ranks)
    per_rank_epoch = [
        {epoch: [tuple(batch) for e, batch in rank["batches"] if e == epoch] for epoch in (0, 1)} for rank in ranks
    ]
    length = ranks[0]["len"]
    assert length == ranks[1]["len"] >= 2
    datamodule = MultiExperimentDataModule(**DDP_DATA)
    datamodule.setup("fit")
    single = FlexibleBatchSampler(
        datamodule.train_dataset.index.valid_anchors, batch_size=16, leaky=0.1, temporal_enrichment=True, seed=1
    )
    for epoch in (0, 1):
        first, second = per_rank_epoch[0][epoch], per_rank_epoch[1][epoch]
        assert len(first) == len(second) == length
        assert not set(first) & set(second)
        # the epoch's batches, and fresh padding batches if it does not split evenly over the ranks
        epoch_batches = {tuple(single.batch(epoch, index)) for index in range(2 * length)}
        assert set(first) | set(second) == epoch_batches
    for rank in per_rank_epoch:
        assert rank[0] != rank[1]


def test_training_channels_all_zero_fills_the_reporter_an_experiment_lacks(experiments_workdir):
    """MEXP-05 through the DataModule: model channels [Phase3D, GFP, RFP] for training and validation alike."""
    datamodule = _datamodule(training_channels="all", leaky=0.0, channel_dropout_channels=[1, 2])
    datamodule.setup("fit")
    assert datamodule.train_dataset.index.registry.active_channels == ["Phase3D", "GFP", "RFP"]
    train = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
    val = datamodule.on_after_batch_transfer(next(iter(datamodule.val_dataloader())), 0)
    for batch, missing, present in ((train, 2, 1), (val, 1, 2)):
        for key in ("anchor", "positive"):
            assert batch[key].shape == (16, 3, 5, 32, 32)
            assert torch.count_nonzero(batch[key][:, missing]) == 0
            assert torch.count_nonzero(batch[key][:, present]) > 0


def test_a_reused_read_array_has_the_channels_an_experiment_lacks_zeroed(experiments_workdir):
    """Samples of both experiments (GFP only, RFP only) land in the arrays of dropped batches: no stale reporter."""
    datamodule = _datamodule(
        training_channels="all", val_experiments=[], condition_balanced=False, channel_dropout_channels=[1, 2]
    )
    datamodule.setup("fit")
    experiments_seen, n_batches = set(), 0
    for batch, _ in zip(datamodule.train_dataloader(), range(16), strict=False):
        n_batches += 1
        for key in ("anchor", "positive"):
            for sample in batch[key]:  # batches may mix experiments (leaky)
                empty = [int(torch.count_nonzero(sample[channel])) == 0 for channel in (1, 2)]
                assert sum(empty) == 1, "each experiment lacks exactly one reporter: all zero"
                experiments_seen.add(empty.index(True))
        del batch
    assert experiments_seen == {0, 1}
    assert n_batches == 16
    assert len(datamodule.train_dataset._reader.buffers) < 2 * n_batches  # anchor and positive arrays were reused


def test_training_batch_sampler_exposes_the_samplers_attributes_but_not_to_lightning(experiments_workdir):
    """Regression: the loader's batch_sampler hid set_epoch & co.; Lightning's own set_epoch must still miss it."""
    datamodule = _datamodule()
    datamodule.setup("fit")
    datamodule.load_state_dict({"sampler": {"epoch": 1, "batches_yielded": 3, "num_replicas": 1}})
    loader = datamodule.train_dataloader()
    batch_sampler = loader.batch_sampler
    assert (batch_sampler.leaky, batch_sampler.num_replicas) == (0.1, 1)
    assert batch_sampler.experiment_aware
    assert batch_sampler.temporal_enrichment
    assert batch_sampler.valid_anchors is datamodule.train_dataset.index.valid_anchors
    # Lightning resets batch_sampler.sampler at each epoch start and rebuilds a batch_sampler with batch_size and
    # drop_last around its DistributedSampler: neither may find the sampler through the wrapper
    for hidden in ("sampler", "batch_size", "drop_last"):
        assert not hasattr(batch_sampler, hidden)
    reference = FlexibleBatchSampler(
        batch_sampler.valid_anchors, batch_size=16, leaky=0.1, temporal_enrichment=True, seed=3
    )
    reference.set_epoch(1)
    epoch_1 = list(reference)
    assert list(batch_sampler) == epoch_1[3:]
    batch_sampler.set_epoch(1)  # what a callback written for the reference does
    assert list(batch_sampler) == epoch_1
    assert batch_sampler.state_dict() == {"epoch": 1, "batches_yielded": 0, "num_replicas": 1}


def test_a_trainer_injecting_its_distributed_sampler_is_told_to_set_use_distributed_sampler_false(
    experiments_workdir,
):
    """Regression: exposing batch_size and drop_last turned Lightning's message into a bare TypeError."""
    # Lightning's DDP setup exports MASTER_PORT, NODE_RANK and LOCAL_RANK; left behind, they make a later
    # `--trainer.devices=2` subprocess believe it is an already launched rank and wait for a peer forever
    with mock.patch.dict(os.environ):
        trainer = cpu_trainer(experiments_workdir, strategy="ddp", max_steps=1, limit_val_batches=0)
        try:
            with pytest.raises(TypeError, match=r"use_distributed_sampler=False"):
                trainer.fit(_module(), _datamodule())
        finally:  # the failed fit leaves its one-process group behind; later tests expect none
            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()


class _SetEpochAtEpochStart(_RecordBatches):
    """A callback written for the reference, whose training loader's batch_sampler is the sampler itself."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        trainer.train_dataloader.batch_sampler.set_epoch(trainer.current_epoch)


@pytest.mark.slow
def test_callback_setting_the_epoch_through_batch_sampler_trains_as_without_it(experiments_workdir):
    """batch_sampler.set_epoch(trainer.current_epoch) at each epoch start works and gives the same batches."""
    runs = []
    for callback in (_RecordBatches(), _SetEpochAtEpochStart()):
        trainer = cpu_trainer(
            experiments_workdir, max_epochs=2, limit_train_batches=2, limit_val_batches=0, callbacks=[callback]
        )
        trainer.fit(_module(), _datamodule())
        runs.append(callback.steps)
    without, with_callback = runs
    assert len(without) == len(with_callback) == 4
    for seen, expected in zip(with_callback, without, strict=True):
        torch.testing.assert_close(seen[0], expected[0], rtol=0, atol=0)
    assert not torch.equal(without[0][0], without[2][0])  # the epochs differ
