"""TemperatureSchedule: the temperature of each epoch, set on the loss that trains and logged."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import CSVLogger
from pytorch_metric_learning.losses import NTXentLoss
from torch.utils.data import DataLoader

from dynaclr.engine import ContrastiveModule
from dynaclr.loss import NTXentHCL
from dynaclr.temperature import TemperatureSchedule, scheduled_temperature

from .conftest import PairsDataset, TinyEncoder, cpu_trainer


def test_cosine_schedule_values_per_epoch():
    values = [scheduled_temperature(0.5, 0.1, epoch, 5) for epoch in range(7)]
    expected = [0.1 + 0.4 * 0.5 * (1 + math.cos(math.pi * epoch / 4)) for epoch in range(5)] + [0.1, 0.1]
    assert values == pytest.approx(expected, rel=1e-12, abs=0)
    assert values[0] == 0.5
    assert values[4] == pytest.approx(0.1, rel=1e-12)
    assert values[2] == pytest.approx(0.3, rel=1e-12)  # the midpoint of a half cosine


def test_linear_schedule_values_and_a_one_epoch_schedule():
    assert [scheduled_temperature(0.4, 0.1, epoch, 4, "linear") for epoch in range(5)] == pytest.approx(
        [0.4, 0.3, 0.2, 0.1, 0.1], rel=1e-12
    )
    assert scheduled_temperature(0.4, 0.1, 3, 1) == 0.4
    assert scheduled_temperature(0.1, 0.3, 1, 3) == pytest.approx(0.2, rel=1e-12)  # rising schedules too


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": 0.0, "end": 0.1}, "Temperatures must be positive; got start=0.0"),
        ({"start": 0.2, "end": -0.1}, "Temperatures must be positive"),
        ({"start": 0.2, "end": 0.1, "epochs": 0}, "epochs must be at least 1; got 0"),
        ({"start": 0.2, "end": 0.1, "shape": "step"}, "shape must be one of ('cosine', 'linear'); got 'step'"),
    ],
)
def test_invalid_schedules_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TemperatureSchedule(**kwargs)


class _RecordTemperature(Callback):
    """The loss's temperature at each training batch, per epoch."""

    def __init__(self) -> None:
        self.seen: dict[int, set[float]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.setdefault(trainer.current_epoch, set()).add(pl_module.loss_function.temperature)


@pytest.mark.parametrize("loss_function", [NTXentHCL(temperature=0.07), NTXentLoss(temperature=0.07)])
def test_fit_trains_each_epoch_at_its_temperature_and_logs_it(tmp_path, loss_function):
    module = ContrastiveModule(TinyEncoder(), loss_function=loss_function, lr=1e-2)
    record = _RecordTemperature()
    trainer = cpu_trainer(
        tmp_path,
        max_epochs=4,
        logger=CSVLogger(tmp_path, name="run"),
        callbacks=[TemperatureSchedule(start=0.3, end=0.05), record],
        log_every_n_steps=1,
    )
    trainer.fit(module, DataLoader(PairsDataset(), batch_size=4), DataLoader(PairsDataset(), batch_size=4))
    expected = [scheduled_temperature(0.3, 0.05, epoch, 4) for epoch in range(4)]  # the schedule spans max_epochs
    assert record.seen == {epoch: {value} for epoch, value in enumerate(expected)}
    logged = pd.read_csv(tmp_path / "run" / "version_0" / "metrics.csv").dropna(subset=["loss/temperature"])
    assert logged["epoch"].tolist() == [0, 1, 2, 3]
    assert logged["loss/temperature"].tolist() == pytest.approx(expected, rel=1e-6)  # logged as float32


def test_the_loss_at_a_scheduled_temperature_is_the_loss_configured_at_it():
    embeddings = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(4).repeat(2)
    scheduled = NTXentHCL(temperature=0.07, beta=0.5)
    scheduled.temperature = 0.2
    assert torch.equal(scheduled(embeddings, labels), NTXentHCL(temperature=0.2, beta=0.5)(embeddings, labels))


def test_a_loss_without_temperature_is_refused_when_fitting_starts(tmp_path):
    module = ContrastiveModule(TinyEncoder(), loss_function=torch.nn.TripletMarginLoss(), lr=1e-2)
    trainer = cpu_trainer(tmp_path, max_epochs=1, logger=False, callbacks=[TemperatureSchedule(0.2, 0.1)])
    with pytest.raises(ValueError, match=r"needs a loss_function with a temperature; .* is TripletMarginLoss"):
        trainer.fit(module, DataLoader(PairsDataset(), batch_size=4))
