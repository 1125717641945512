"""``LogProgress`` lines on a tiny CPU fit with a fake clock, and ``VisCyTrainer``'s choice of progress bar."""

from __future__ import annotations

import math
import re
import shutil
import sys

import pytest
import torch
from lightning.pytorch import LightningModule, seed_everything
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from torch.utils.data import DataLoader, TensorDataset

from viscy_utils import progress
from viscy_utils.callbacks import LogProgress
from viscy_utils.callbacks.progress_log import _count_samples
from viscy_utils.progress import ProgressMeter, format_count, format_duration, format_rate
from viscy_utils.trainer import VisCyTrainer

BATCH_SIZE = 8
TRAIN_BATCHES = 8
TRAIN_STEP_SECONDS = 2.0
EVAL_STEP_SECONDS = 1.0


class FakeClock:
    """A ``time.monotonic`` that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class BoringModule(LightningModule):
    """A linear layer on random vectors; each step moves the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
        self.clock = clock

    def _loss(self, batch: list[torch.Tensor]) -> torch.Tensor:
        return self.layer(batch[0]).pow(2).mean()

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.clock.now += TRAIN_STEP_SECONDS
        loss = self._loss(batch)
        self.log("loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.clock.now += EVAL_STEP_SECONDS
        self.log("val_loss", self._loss(batch), prog_bar=True)

    def test_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.clock.now += EVAL_STEP_SECONDS
        self.log("test_loss", self._loss(batch), prog_bar=True)

    def predict_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.clock.now += EVAL_STEP_SECONDS
        return self.layer(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def _loader(self, n_batches: int) -> DataLoader:
        return DataLoader(TensorDataset(torch.randn(n_batches * BATCH_SIZE, 4)), batch_size=BATCH_SIZE)

    def train_dataloader(self) -> DataLoader:
        return self._loader(TRAIN_BATCHES)

    def val_dataloader(self) -> DataLoader:
        return self._loader(2)

    def test_dataloader(self) -> DataLoader:
        return self._loader(2)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(2)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(progress, "monotonic", fake)
    return fake


def _trainer(tmp_path, callback: LogProgress, **kwargs) -> VisCyTrainer:
    settings = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 2,
        "logger": False,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
        "callbacks": [callback],
    }
    return VisCyTrainer(**{**settings, **kwargs})


def _lines(capsys: pytest.CaptureFixture[str]) -> list[list[str]]:
    """The printed progress lines, each split into its ``|``-separated parts."""
    out = capsys.readouterr().out
    return [line.split(" | ") for line in out.splitlines() if re.match(r"(train|validate|test|predict)\b", line)]


def test_time_trigger_prints_step_epoch_rates_etas_and_loss(tmp_path, clock, capsys):
    seed_everything(0)
    trainer = _trainer(tmp_path, LogProgress(every_n_seconds=5.0))
    trainer.fit(BoringModule(clock))
    lines = _lines(capsys)
    heads = [parts[0] for parts in lines]
    # 2 s per training step, a line every 5 s: steps 3 and 6; the 2-batch sanity check prints nothing
    assert heads == [
        "train epoch 1/2 step 3/8 (38%)",
        "train epoch 1/2 step 6/8 (75%)",
        "validate epoch 1/2 done: 2 steps in 0:00:02",
        "train epoch 1/2 done: 8 steps in 0:00:18",
        "train epoch 2/2 step 3/8 (38%)",
        "train epoch 2/2 step 6/8 (75%)",
        "validate epoch 2/2 done: 2 steps in 0:00:02",
        "train epoch 2/2 done: 8 steps in 0:00:18",
    ]
    step_3 = lines[0]
    assert step_3[1] == "0.5 it/s, 4 samples/s"  # 3 batches of 8 in 6 s
    # 5 batches left in the epoch, 13 in the fit, at 2 s each
    assert step_3[2] == "ETA epoch 0:00:10, fit 0:00:26"
    assert re.fullmatch(r"loss=\d+\.?\d*(e-?\d+)?", step_3[3])
    validation = lines[2]
    assert validation[1] == "1 it/s, 8 samples/s"
    assert "val_loss=" in validation[2]
    # the fit's first epoch took 18 s with its validation: 18 s more for the second
    assert lines[3][2] == "ETA fit 0:00:18"
    # 11 batches in 24 s of fit, validation included: 5 more take 11 s
    assert lines[4][2] == "ETA epoch 0:00:10, fit 0:00:11"
    assert lines[-1][2] == "ETA fit 0:00:00"


def test_step_trigger_and_max_steps_eta(tmp_path, clock, capsys):
    trainer = _trainer(tmp_path, LogProgress(every_n_steps=2, every_n_seconds=None), max_epochs=-1, max_steps=6)
    trainer.fit(BoringModule(clock))
    lines = _lines(capsys)
    heads = [parts[0] for parts in lines if parts[0].startswith("train")]
    # max_steps=6 makes the epoch 6 batches long; the epoch has no total
    assert heads == [
        "train epoch 1 step 2/6 (33%)",
        "train epoch 1 step 4/6 (67%)",
        "train epoch 1 step 6/6 (100%)",
        "train epoch 1 done: 6 steps in 0:00:12",
    ]
    assert lines[0][2] == "ETA epoch 0:00:08, fit 0:00:08"


def test_validate_test_and_predict_print_lines_without_epochs(tmp_path, clock, capsys):
    model = BoringModule(clock)
    trainer = _trainer(tmp_path, LogProgress(every_n_steps=1))
    trainer.validate(model, verbose=False)
    trainer.test(model, verbose=False)
    trainer.predict(model)
    lines = _lines(capsys)
    assert [parts[0] for parts in lines] == [
        "validate step 1/2 (50%)",
        "validate step 2/2 (100%)",
        "validate done: 2 steps in 0:00:02",
        "test step 1/2 (50%)",
        "test step 2/2 (100%)",
        "test done: 2 steps in 0:00:02",
        "predict step 1/2 (50%)",
        "predict step 2/2 (100%)",
        "predict done: 2 steps in 0:00:02",
    ]
    assert lines[0][1:] == ["1 it/s, 8 samples/s", "ETA 0:00:01"]
    assert lines[2][2].startswith("val_loss=")
    assert lines[5][2].startswith("test_loss=")
    assert len(lines[-1]) == 2  # predict logs no metrics


def test_a_disabled_bar_prints_nothing(tmp_path, clock, capsys):
    callback = LogProgress(every_n_steps=1)
    callback.disable()
    _trainer(tmp_path, callback, max_epochs=1).fit(BoringModule(clock))
    assert _lines(capsys) == []
    assert not callback.is_enabled


@pytest.mark.parametrize("arguments", [{"every_n_steps": 0}, {"every_n_seconds": -1.0}, {"every_n_seconds": None}])
def test_triggers_must_be_positive(arguments):
    with pytest.raises(ValueError, match="every_n"):
        LogProgress(**arguments)


def test_samples_are_the_leading_dimension_of_the_first_tensor():
    images = torch.zeros(5, 2, 3)
    assert _count_samples(images) == 5
    assert _count_samples({"index": {"fov_name": ["A/1/0"] * 5}, "anchor": images, "label": torch.zeros(7)}) == 5
    assert _count_samples([("name", torch.tensor(1.0)), [images]]) == 5
    assert _count_samples({"name": "no tensors"}) == 0


def test_durations_counts_and_etas_read_plainly(clock):
    assert format_duration(65.4) == "0:01:05"
    assert format_duration(100000) == "27:46:40"
    assert format_duration(math.inf) == "?"
    assert [format_rate(rate) for rate in (1 / 30, 2.414, 1234.4, math.nan)] == ["0.0333", "2.41", "1234", "?"]
    assert format_count(3, 8) == "3/8 (38%)"
    assert format_count(3, math.inf) == "3"
    meter = ProgressMeter(10, every_n_steps=None, every_n_seconds=None)
    assert meter.eta(10) == math.inf
    clock.now += 4
    assert not meter.update(items=16)
    assert meter.rates() == (0.25, 4.0)
    assert meter.eta(9) == 36.0


def _set_isatty(monkeypatch: pytest.MonkeyPatch, tty: bool) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: tty)


@pytest.mark.parametrize("callbacks", [None, [], TQDMProgressBar(), [TQDMProgressBar()]])
def test_trainer_prints_lines_when_stdout_is_not_a_terminal(monkeypatch, callbacks):
    _set_isatty(monkeypatch, False)
    trainer = VisCyTrainer(accelerator="cpu", logger=False, callbacks=callbacks)
    given = callbacks is not None and (not isinstance(callbacks, list) or callbacks)
    assert isinstance(trainer.progress_bar_callback, TQDMProgressBar if given else LogProgress)
    assert len([callback for callback in trainer.callbacks if isinstance(callback, ProgressBar)]) == 1


def test_trainer_keeps_lightnings_bar_on_a_terminal(monkeypatch):
    _set_isatty(monkeypatch, True)
    trainer = VisCyTrainer(accelerator="cpu", logger=False)
    assert isinstance(trainer.progress_bar_callback, ProgressBar)
    assert not isinstance(trainer.progress_bar_callback, LogProgress)


def test_trainer_without_a_progress_bar_gets_none(monkeypatch):
    _set_isatty(monkeypatch, False)
    assert VisCyTrainer(accelerator="cpu", logger=False, enable_progress_bar=False).progress_bar_callback is None


def test_preprocess_prints_a_line_every_tenth_of_the_fovs(tmp_path, synthetic_plate, capsys):
    from viscy_utils.meta_utils import generate_normalization_metadata

    plate_path = tmp_path / "plate.zarr"
    shutil.copytree(synthetic_plate.store_path, plate_path)
    generate_normalization_metadata(plate_path, num_workers=2, grid_spacing=8)
    lines = capsys.readouterr().out.splitlines()
    # 8 FOVs: a tenth of them rounds up to one
    assert [line.split(" | ")[0] for line in lines[:-1]] == [f"Reading FOVs {n}/8 ({n / 8:.0%})" for n in range(1, 8)]
    assert all(re.fullmatch(r"[\d.]+ FOV/s", line.split(" | ")[1]) for line in lines[:-1])
    assert all(re.fullmatch(r"ETA \d+:\d\d:\d\d", line.split(" | ")[2]) for line in lines[:-1])
    assert re.fullmatch(r"Reading FOVs done: 8 FOVs in \d+:\d\d:\d\d", lines[-1])
