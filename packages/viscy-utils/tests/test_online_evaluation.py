"""OnlineEvaluation and its metrics: hand-computed values, the track split, DDP, and a real Trainer."""

from __future__ import annotations

import math
import os
import socket
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

from viscy_utils.callbacks import OnlineEvaluation
from viscy_utils.callbacks.online_evaluation import gather_cells
from viscy_utils.evaluation.representation import (
    alignment,
    balanced_accuracy,
    consecutive_frame_pairs,
    effective_rank,
    knn_accuracy,
    linear_probe_score,
    representation_metrics,
    select_track_windows,
    temporal_smoothness,
    track_split,
    uniformity,
)


def _cells(n_tracks: int = 40, n_frames: int = 6) -> pd.DataFrame:
    """``n_tracks`` tracks of ``n_frames`` frames in two FOVs; half the tracks 'infected' (even track ids)."""
    track = np.repeat(np.arange(n_tracks), n_frames)
    return pd.DataFrame(
        {
            "fov_name": np.where(track % 4 < 2, "A/1/0", "B/1/0"),
            "track_id": track,
            "t": np.tile(np.arange(n_frames), n_tracks),
            "condition": np.where(track % 2 == 0, "infected", "uninfected"),
        }
    )


def _separable(cells: pd.DataFrame, dim: int = 16, seed: int = 0) -> np.ndarray:
    """Embeddings whose first coordinate is +-5 by condition, plus unit noise elsewhere."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(cells), dim))
    x[:, 0] = np.where(cells["condition"] == "infected", 5.0, -5.0)
    return x


# ------------------------------------------------------------------------------------------------
# the metrics on hand-made embeddings


def test_a_perfectly_separable_label_scores_one():
    cells = _cells()
    x = _separable(cells)
    groups = cells[["fov_name", "track_id"]]
    assert knn_accuracy(x, cells["condition"], groups, k=20) == 1.0
    assert linear_probe_score(x, cells["condition"], groups) == 1.0


@pytest.mark.parametrize("n_classes", [2, 4])
def test_shuffled_labels_score_near_chance(n_classes):
    """Labels drawn independently of the embeddings: balanced accuracy within 0.06 of 1 / n_classes.

    2400 cells scored: the standard error of the balanced accuracy is about 0.01 (two classes) to
    0.018 (four), so 0.06 is over 3 standard errors.
    """
    cells = _cells(n_tracks=400, n_frames=6)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(len(cells), 32))
    labels = rng.integers(0, n_classes, size=len(cells))
    groups = cells[["fov_name", "track_id"]]
    assert knn_accuracy(x, labels, groups, k=20) == pytest.approx(1 / n_classes, abs=0.06)
    assert linear_probe_score(x, labels, groups) == pytest.approx(1 / n_classes, abs=0.06)
    # a separable embedding with the same labels shuffled is no better
    separable = rng.normal(size=(len(cells), 32))
    separable[:, 0] += 10 * labels
    shuffled = rng.permutation(labels)
    assert knn_accuracy(separable, shuffled, groups) == pytest.approx(1 / n_classes, abs=0.06)


def test_knn_vote_is_not_outvoted_by_a_common_class():
    """A rare class (a fifth of the tracks, like infected cells) that the embedding groups is found (regression).

    An unweighted majority vote of 20 neighbors almost never elects the rare class: balanced
    accuracy 0.52 here against the linear probe's 0.68. Weighting votes by inverse class size
    gives 0.64; shuffled rare labels stay within 0.06 of chance (2400 cells, 3 standard errors).
    """
    cells = _cells(n_tracks=400, n_frames=6)
    groups = cells[["fov_name", "track_id"]]
    rare = (cells["track_id"] % 5 == 0).to_numpy()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(len(cells), 8))
    x[:, 0] += rare
    assert knn_accuracy(x, rare, groups, k=20) > 0.6
    assert knn_accuracy(rng.normal(size=(len(cells), 8)), rare, groups, k=20) == pytest.approx(0.5, abs=0.06)


def test_knn_tied_weighted_votes_go_to_the_more_similar_class():
    """Every reference cell votes (k = fold size, three per class): the totals tie, similarity decides."""
    cells = _cells(n_tracks=12, n_frames=1)
    groups = cells[["fov_name", "track_id"]]
    folds = track_split(groups)
    assert folds.sum() == (~folds).sum() == 6
    labels = np.empty(len(cells), dtype=object)
    for fold in (folds, ~folds):
        members = np.flatnonzero(fold)
        labels[members[:3]], labels[members[3:]] = "a", "b"
    # class "a" at 30 degrees, "b" at 60: each cell is nearer the references of its own class
    angle = np.deg2rad(np.where(labels == "a", 30.0, 60.0))
    x = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    assert knn_accuracy(x, labels, groups, k=6) == 1.0


def test_balanced_accuracy_is_the_mean_recall_of_each_class():
    # class a: 3 of 4 right, class b: 0 of 1 right -> (0.75 + 0) / 2
    assert balanced_accuracy(["a", "a", "a", "a", "b"], ["a", "a", "a", "b", "a"]) == 0.375
    assert math.isnan(balanced_accuracy([], []))


def test_label_scores_are_undefined_with_one_class_or_one_fold():
    cells = _cells()
    x = _separable(cells)
    assert math.isnan(knn_accuracy(x, ["same"] * len(cells), cells["track_id"]))
    assert math.isnan(linear_probe_score(x, ["same"] * len(cells), cells["track_id"]))
    # a single track: everything falls in one fold, there is nothing to fit on
    assert math.isnan(knn_accuracy(x, cells["condition"], np.zeros(len(cells))))


def test_a_collapsed_embedding_has_effective_rank_one():
    direction = np.random.default_rng(0).normal(size=64)
    assert effective_rank(np.tile(direction, (100, 1))) == pytest.approx(1.0, abs=1e-9)
    # multiples of one vector span one dimension too
    assert effective_rank(np.arange(1, 101)[:, None] * direction) == pytest.approx(1.0, abs=1e-9)
    # and every pair of cells is at the same place on the sphere
    assert uniformity(np.tile(direction, (100, 1))) == pytest.approx(0.0, abs=1e-12)
    cells = _cells()
    assert math.isnan(temporal_smoothness(np.tile(direction, (len(cells), 1)), *consecutive_frame_pairs(cells)))


def test_effective_rank_by_hand():
    assert effective_rank(np.eye(10)) == pytest.approx(10.0)
    # singular values 3 and 1: p = (3/4, 1/4), exp(-(3/4 ln 3/4 + 1/4 ln 1/4)) = 4 / 3**0.75
    assert effective_rank(np.diag([3.0, 1.0])) == pytest.approx(4 / 3**0.75)
    assert effective_rank(np.zeros((4, 3))) == 0.0


def test_alignment_and_uniformity_by_hand():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert alignment(a, a) == 0.0
    # antipodal pairs: ||x - y||^2 = 4 after normalization, whatever the norms
    assert alignment(a, -3 * a) == pytest.approx(4.0)
    # two orthogonal unit vectors: ||x - y||^2 = 2, log exp(-2 * 2) = -4
    assert uniformity(a) == pytest.approx(-4.0)
    # three: pairs at distance^2 2, 2 and 4 (x, y, -x): log mean(e^-4, e^-4, e^-8)
    three = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert uniformity(three) == pytest.approx(math.log((2 * math.exp(-4) + math.exp(-8)) / 3))


def test_temporal_smoothness_by_hand():
    # one track t = 0, 1, 2 at angles 0, 0, 90 degrees, and a cell of another track at 180 degrees
    x = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    cells = pd.DataFrame({"fov_name": "A/1/0", "track_id": [1, 1, 1, 2], "t": [0, 1, 2, 0]})
    earlier, later = consecutive_frame_pairs(cells)
    assert sorted(zip(earlier.tolist(), later.tolist(), strict=True)) == [(0, 1), (1, 2)]
    # consecutive cosine distances 0 and 1; the 6 pairs of distinct cells: 0, 1, 2, 1, 2, 1
    assert temporal_smoothness(x, earlier, later) == pytest.approx((1 / 2) / (7 / 6))


def test_consecutive_frame_pairs_skip_gaps_and_other_tracks():
    cells = pd.DataFrame({"fov_name": ["A", "A", "A", "B", "A"], "track_id": [1, 1, 1, 1, 2], "t": [3, 0, 1, 2, 2]})
    earlier, later = consecutive_frame_pairs(cells)
    # track (A, 1) has t 0, 1, 3: only 0 -> 1; (B, 1) and (A, 2) share no track with t +- 1
    assert list(zip(earlier.tolist(), later.tolist(), strict=True)) == [(1, 2)]


# ------------------------------------------------------------------------------------------------
# the track split and the cell selection


def test_the_track_split_never_puts_one_track_on_both_sides():
    cells = _cells(n_tracks=200, n_frames=7).sample(frac=1.0, random_state=0).reset_index(drop=True)
    groups = cells[["fov_name", "track_id"]]
    folds = track_split(groups, seed=3)
    per_track = pd.Series(folds).groupby([cells["fov_name"], cells["track_id"]]).nunique()
    assert (per_track == 1).all()
    assert 0.35 < folds.mean() < 0.65
    # a track's fold depends on its key alone: not on the rows around it, nor on the order
    subset = cells.iloc[::3].reset_index(drop=True)
    np.testing.assert_array_equal(track_split(subset[["fov_name", "track_id"]], seed=3), folds[::3])
    assert not np.array_equal(track_split(groups, seed=4), folds)
    # the same track id in another FOV is another track, split on its own
    twins = pd.DataFrame({"fov_name": np.repeat(["A/1/0", "B/1/0"], 200), "track_id": np.tile(np.arange(200), 2)})
    twin_folds = track_split(twins)
    assert (twin_folds[:200] != twin_folds[200:]).any()


def test_select_track_windows_spreads_consecutive_frames_over_tracks():
    cells = _cells(n_tracks=30, n_frames=10)
    rows = select_track_windows(cells, max_cells=100, seed=0, track_columns=["fov_name", "track_id"])
    assert len(rows) <= 100
    np.testing.assert_array_equal(rows, select_track_windows(cells, 100, 0, ["fov_name", "track_id"]))
    chosen = cells.iloc[rows]
    # 3 frames of each of the 30 tracks fit (90 cells), 4 would not (120)
    assert chosen.groupby("track_id").size().eq(3).all()
    assert chosen["track_id"].nunique() == 30
    assert chosen.groupby("track_id")["t"].agg(lambda t: t.max() - t.min()).eq(2).all()
    assert not np.array_equal(rows, select_track_windows(cells, 100, 1, ["fov_name", "track_id"]))
    # a budget below 2 frames per track: pairs of consecutive frames of some tracks
    few = cells.iloc[select_track_windows(cells, 15, 0, ["fov_name", "track_id"])]
    assert len(few) == 15
    assert few.groupby("track_id").size().max() == 2
    # under budget: every cell
    np.testing.assert_array_equal(select_track_windows(cells, 10_000), np.arange(len(cells)))


def test_representation_metrics_names_and_labels_with_missing_values():
    cells = _cells()
    x = _separable(cells)
    labels = cells["condition"].to_numpy(dtype=object)
    labels[:12] = "unknown"
    labels[12:18] = None
    metrics = representation_metrics(x, x[:, :4], cells, labels={"condition": labels, "empty": [None] * len(cells)})
    assert metrics["knn_accuracy/condition"] == 1.0
    assert metrics["linear_probe/condition"] == 1.0
    assert math.isnan(metrics["knn_accuracy/empty"])
    assert set(metrics) == {
        "knn_accuracy/condition",
        "linear_probe/condition",
        "knn_accuracy/empty",
        "linear_probe/empty",
        "effective_rank/features",
        "effective_rank/projections",
        "alignment",
        "uniformity",
        "temporal_smoothness",
        "cells",
    }
    assert metrics["cells"] == len(cells)
    assert 1 < metrics["effective_rank/projections"] <= 4


# ------------------------------------------------------------------------------------------------
# DDP: two gloo processes give the values of one

N_CELLS, SPLIT = 240, 97


def _shuffled_cells() -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    cells = _cells()
    x = _separable(cells, dim=16)
    x[:, 0] *= np.random.default_rng(5).uniform(0.0, 0.3, size=len(cells))  # not perfectly separable
    order = np.random.default_rng(2).permutation(len(cells))
    return x[order].astype(np.float32), x[order, :4].astype(np.float32), cells.iloc[order].reset_index(drop=True)


def _metrics(features, projections, index) -> dict[str, float]:
    features, projections, index = gather_cells(features, projections, index)
    labels = {"condition": index["condition"].to_numpy()}
    return representation_metrics(features, projections, index, labels, k=20, seed=0)


def _gloo_worker(rank: int, init_file: str, output: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        features, projections, index = _shuffled_cells()
        # unequal shards, and the cell at SPLIT on both ranks (as a DistributedSampler pads)
        part = slice(0, SPLIT + 1) if rank == 0 else slice(SPLIT, None)
        torch.save(_metrics(features[part], projections[part], index.iloc[part]), f"{output}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(sys.platform != "linux", reason="forks the two ranks, which only Linux does safely")
def test_two_gloo_processes_give_the_values_of_one(tmp_path):
    output = tmp_path / "metrics"
    mp.start_processes(
        _gloo_worker, args=(str(tmp_path / "init"), str(output)), nprocs=2, start_method="fork", join=True
    )
    single = _metrics(*_shuffled_cells())
    assert single["cells"] == N_CELLS
    assert 0.5 < single["knn_accuracy/condition"] < 1.0
    for rank in range(2):
        assert torch.load(f"{output}.{rank}") == pytest.approx(single, rel=1e-9, abs=1e-12)


def test_gather_cells_without_a_process_group_sorts_and_deduplicates():
    features, projections, index = _shuffled_cells()
    doubled = np.concatenate([features, features[:5]])
    gathered, gathered_projections, table = gather_cells(
        doubled, np.concatenate([projections, projections[:5]]), pd.concat([index, index.iloc[:5]])
    )
    assert len(table) == N_CELLS
    assert table.index.equals(pd.RangeIndex(N_CELLS))
    assert table[["fov_name", "track_id", "t"]].equals(
        index.sort_values(["fov_name", "track_id", "t"])[["fov_name", "track_id", "t"]].reset_index(drop=True)
    )
    order = index.sort_values(["fov_name", "track_id", "t"]).index.to_numpy()
    np.testing.assert_array_equal(gathered, features[order])
    np.testing.assert_array_equal(gathered_projections, projections[order])


# ------------------------------------------------------------------------------------------------
# the callback in a real Trainer


class _Batches(Dataset):
    def __init__(self, batches: list[dict]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, position: int) -> dict:
        return self.batches[position]


class _Embedder(LightningModule):
    """Features are the mean of each of the 4 anchor channels (dropped out in training); projections the first 2."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.dropout = nn.Dropout(0.5)
        self.training_modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.dropout(x.mean(dim=(2, 3, 4))) * self.scale
        return features, features[:, :2]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.training_modes.append(self.training and self.dropout.training)
        return self(batch["anchor"])[0].pow(2).mean()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log("loss/val", self(batch["anchor"])[0].pow(2).mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


class _CellsDataModule(LightningDataModule):
    """Cells of ``_cells()`` whose 4-channel patches hold their separable embedding; an ``augment`` doubles patches."""

    def __init__(self, with_condition: bool = True, validation: bool = True) -> None:
        super().__init__()
        self.cells = _cells()
        self.embeddings = _separable(self.cells, dim=4).astype(np.float32)
        self.with_condition = with_condition
        self.validation = validation
        self.batch_size = 8
        self.augmented_batches = 0
        self.loader_calls: list[tuple[int, int]] = []

    def _batches(self, rows: np.ndarray, with_index: bool) -> DataLoader:
        batches = []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            batch = {"anchor": torch.from_numpy(self.embeddings[chunk])[:, :, None, None, None].expand(-1, -1, 1, 2, 2)}
            if with_index:
                columns = ["fov_name", "track_id", "t", *(["condition"] if self.with_condition else [])]
                batch["index"] = self.cells.iloc[chunk][columns].to_dict(orient="records")
            batches.append(batch)
        return DataLoader(_Batches(batches), batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._batches(np.arange(32), with_index=False)

    def val_dataloader(self) -> DataLoader | list:
        return self._batches(np.arange(16), with_index=False) if self.validation else []

    def online_evaluation_dataloader(self, max_cells: int, seed: int) -> DataLoader:
        self.loader_calls.append((max_cells, seed))
        rows = select_track_windows(self.cells, max_cells, seed)
        return self._batches(rows[self.trainer.global_rank :: self.trainer.world_size], with_index=True)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if self.trainer.training:  # augmentation: the evaluation must never see it
            self.augmented_batches += 1
            batch = {**batch, "anchor": batch["anchor"] * 2}
        return batch


def _fit(tmp_path, datamodule, callback, **kwargs) -> tuple[pd.DataFrame, _Embedder]:
    module = _Embedder()
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=kwargs.pop("max_epochs", 2),
        logger=CSVLogger(tmp_path, name="run"),
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )
    trainer.fit(module, datamodule=datamodule)
    return pd.read_csv(next(tmp_path.rglob("metrics.csv"))), module


def _logged(metrics: pd.DataFrame) -> pd.DataFrame:
    columns = [column for column in metrics.columns if column.startswith("online_eval/")]
    return metrics.dropna(subset=columns, how="all")[["epoch", *columns]]


def test_the_callback_logs_every_metric_after_each_validation(tmp_path):
    datamodule = _CellsDataModule()
    callback = OnlineEvaluation(max_cells=120, max_epoch_fraction=None)
    metrics, module = _fit(tmp_path, datamodule, callback, num_sanity_val_steps=2)
    logged = _logged(metrics)
    assert logged["epoch"].tolist() == [0, 1]  # once per epoch, not in the sanity check
    # on the same rows as the validation loss: logged at the end of validation
    assert metrics.loc[logged.index, "loss/val"].notna().all()
    assert set(logged.columns) == {
        "epoch",
        "online_eval/knn_accuracy/condition",
        "online_eval/linear_probe/condition",
        "online_eval/effective_rank/features",
        "online_eval/effective_rank/projections",
        "online_eval/alignment",
        "online_eval/uniformity",
        "online_eval/temporal_smoothness",
        "online_eval/cells",
        "online_eval/seconds",
    }
    assert (logged["online_eval/knn_accuracy/condition"] == 1.0).all()
    assert (logged["online_eval/linear_probe/condition"] == 1.0).all()
    assert (logged["online_eval/cells"] == 120).all()
    assert (logged["online_eval/seconds"] > 0).all()
    # the expected values: the cells' own embeddings, un-augmented, without dropout
    rows = select_track_windows(datamodule.cells, 120, 0)
    expected = representation_metrics(
        datamodule.embeddings[rows],
        datamodule.embeddings[rows, :2],
        datamodule.cells.iloc[rows],
        {"condition": datamodule.cells["condition"].to_numpy()[rows]},
    )
    for name, value in expected.items():
        assert logged[f"online_eval/{name}"].iloc[-1] == pytest.approx(value, rel=1e-5)
    assert datamodule.loader_calls == [(120, 0), (120, 0)]
    assert datamodule.augmented_batches == 2 * 4  # training batches only
    assert all(module.training_modes)  # the evaluation restored train mode


def test_without_labels_or_validation_the_label_free_metrics_are_logged_each_epoch(tmp_path):
    datamodule = _CellsDataModule(with_condition=False, validation=False)
    callback = OnlineEvaluation(every_n_epochs=2, max_cells=60, max_epoch_fraction=None)
    metrics, module = _fit(tmp_path, datamodule, callback, max_epochs=4)
    logged = _logged(metrics)
    assert logged["epoch"].tolist() == [1, 3]
    assert not any("knn_accuracy" in column or "linear_probe" in column for column in logged.columns)
    assert {"online_eval/effective_rank/features", "online_eval/temporal_smoothness"} <= set(logged.columns)
    # evaluated at the end of training epochs, which went on in train mode (dropout on)
    assert len(module.training_modes) == 4 * 4
    assert all(module.training_modes)


def test_annotations_csv_adds_its_columns_as_labels(tmp_path):
    datamodule = _CellsDataModule(with_condition=False)
    annotations = datamodule.cells[["fov_name", "track_id", "t"]].copy()
    annotations["fov_name"] = "/" + annotations["fov_name"]  # a leading slash is ignored
    annotations["infection_state"] = np.where(datamodule.cells["condition"] == "infected", 1, 0)
    annotations.loc[annotations["track_id"] == 0, "infection_state"] = None  # unannotated: left out
    annotations.to_csv(tmp_path / "annotations.csv", index=False)
    callback = OnlineEvaluation(
        max_cells=120, max_epoch_fraction=None, annotations_csv=str(tmp_path / "annotations.csv")
    )
    logged = _logged(_fit(tmp_path, datamodule, callback, max_epochs=1)[0])
    assert logged["online_eval/knn_accuracy/infection_state"].tolist() == [1.0]
    assert logged["online_eval/linear_probe/infection_state"].tolist() == [1.0]


def test_max_epoch_fraction_caps_the_cells():
    class _Trainer:
        num_training_batches = 10
        world_size = 2
        datamodule = _CellsDataModule()  # batch_size 8

    # 0.05 * 6 forward passes * 10 batches * 8 anchors * 2 ranks = 48 cells
    assert OnlineEvaluation(max_epoch_fraction=0.05).cell_budget(_Trainer()) == 48
    assert OnlineEvaluation(max_cells=20, max_epoch_fraction=0.05).cell_budget(_Trainer()) == 20
    assert OnlineEvaluation(max_epoch_fraction=None).cell_budget(_Trainer()) == 2048


def test_bad_settings_fail_at_once(tmp_path):
    with pytest.raises(ValueError, match="k must be >= 1"):
        OnlineEvaluation(k=0)
    with pytest.raises(ValueError, match="max_epoch_fraction"):
        OnlineEvaluation(max_epoch_fraction=0)

    class _NoCells(_CellsDataModule):
        online_evaluation_dataloader = None

    with pytest.raises(TypeError, match="online_evaluation_dataloader"):
        _fit(tmp_path, _NoCells(), OnlineEvaluation())
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        _fit(tmp_path, _CellsDataModule(), OnlineEvaluation(annotations_csv=str(tmp_path / "missing.csv")))
    with pytest.raises(KeyError, match="infection_state"):
        _fit(tmp_path, _CellsDataModule(), OnlineEvaluation(label_columns=["infection_state"]), max_epochs=1)


def _online_metrics(trainer: Trainer) -> dict[str, float]:
    return {
        name: float(value)
        for name, value in trainer.callback_metrics.items()
        if name.startswith("online_eval/") and name != "online_eval/seconds"
    }


def _ddp_fit_worker(rank: int, port: int, output: str) -> None:
    """One of two processes of a DDP fit launched as torchrun or SLURM would (the environment names the rank)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank)
    )
    os.environ["NODE_RANK"] = "0"
    torch.set_num_threads(1)
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=1,
        logger=False,
        callbacks=[OnlineEvaluation(max_cells=120, max_epoch_fraction=None)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(_Embedder(), datamodule=_CellsDataModule())
    assert torch.distributed.is_initialized()
    assert trainer.world_size == 2
    assert trainer.global_rank == rank
    torch.save(_online_metrics(trainer), f"{output}.{rank}")


@pytest.mark.skipif(sys.platform != "linux", reason="forks the two ranks, which only Linux does safely")
def test_a_two_process_ddp_fit_logs_the_values_of_one_process_on_every_rank(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    output = tmp_path / "metrics"
    mp.start_processes(_ddp_fit_worker, args=(port, str(output)), nprocs=2, start_method="fork", join=True)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        callbacks=[OnlineEvaluation(max_cells=120, max_epoch_fraction=None)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(_Embedder(), datamodule=_CellsDataModule())
    single = _online_metrics(trainer)
    assert single["online_eval/cells"] == 120
    assert single["online_eval/knn_accuracy/condition"] == 1.0
    for rank in range(2):
        assert torch.load(f"{output}.{rank}") == pytest.approx(single, rel=1e-6)
