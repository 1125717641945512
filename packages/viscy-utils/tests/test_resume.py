"""Interrupted runs resume: ResumableCheckpoint, ``--ckpt_path last`` and the cleanup of runs that never started."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Trainer

from viscy_utils.callbacks import ResumableCheckpoint
from viscy_utils.cli import LOG_LEVEL_ENV, main
from viscy_utils.resume import find_last_checkpoint
from viscy_utils.testing import RandomPairsDataModule, TinyRegressor
from viscy_utils.testing.callbacks import StopAtStep


def _touch(path: Path, mtime: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    os.utime(path, (mtime, mtime))
    return path


def _csv_logger(save_dir: Path, version: int | str | None = None) -> dict:
    return {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": str(save_dir), "name": "run", "version": version},
    }


def test_numbered_runs_resume_the_newest_version_holding_a_last_checkpoint(tmp_path):
    _touch(tmp_path / "run/version_0/checkpoints/last.ckpt", 1_000)
    newest = _touch(tmp_path / "run/version_1/checkpoints/last.ckpt", 2_000)
    (tmp_path / "run/version_2").mkdir()  # an attempt that saved nothing
    found = find_last_checkpoint({"logger": _csv_logger(tmp_path)}, cwd=tmp_path)
    assert found.path == newest
    assert found.version == "version_1"


def test_a_fixed_version_looks_only_in_its_own_run_directory(tmp_path):
    _touch(tmp_path / "run/other/checkpoints/last.ckpt", 3_000)
    own = _touch(tmp_path / "run/mine/checkpoints/last-v1.ckpt", 1_000)
    found = find_last_checkpoint({"logger": _csv_logger(tmp_path, "mine")}, cwd=tmp_path)
    assert (found.path, found.version) == (own, None)
    assert find_last_checkpoint({"logger": _csv_logger(tmp_path, 3)}, cwd=tmp_path).looked_in == (
        str(tmp_path / "run/version_3/checkpoints"),
    )


def test_a_checkpoint_dirpath_and_the_default_logger_are_searched(tmp_path):
    config = {
        "default_root_dir": "root",
        "callbacks": [{"class_path": "viscy_utils.callbacks.ResumableCheckpoint", "init_args": {"dirpath": "ckpts"}}],
    }
    newest = _touch(tmp_path / "ckpts/last.ckpt", 2_000)
    _touch(tmp_path / "root/lightning_logs/20260101-000000/checkpoints/last.ckpt", 1_000)
    found = find_last_checkpoint(config, cwd=tmp_path)
    assert (found.path, found.version) == (newest, None)
    assert found.looked_in == (str(tmp_path / "ckpts"), str(tmp_path / "root/lightning_logs/*/checkpoints"))
    assert find_last_checkpoint({**config, "logger": False}, cwd=tmp_path).looked_in[-1] == str(
        tmp_path / "root/checkpoints"
    )


def test_nothing_found_and_a_logger_of_unknown_layout(tmp_path):
    found = find_last_checkpoint({"logger": _csv_logger(tmp_path)}, cwd=tmp_path)
    assert found.path is None
    assert found.looked_in == (str(tmp_path / "run/*/checkpoints"),)
    wandb = {"class_path": "lightning.pytorch.loggers.WandbLogger", "init_args": {}}
    assert find_last_checkpoint({"logger": wandb}, cwd=tmp_path) is None


def _trainer(tmp_path: Path, callbacks: list, **kwargs) -> Trainer:
    defaults = {
        "accelerator": "cpu",
        "max_epochs": 1,
        "limit_val_batches": 0,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
        "default_root_dir": tmp_path,
    }
    return Trainer(callbacks=callbacks, **{**defaults, **kwargs})


def _saved_step(path: Path) -> int:
    return torch.load(path, weights_only=False)["global_step"]


def test_last_checkpoint_is_refreshed_at_its_step_interval(tmp_path):
    class ReadLast(StopAtStep):
        """Record the step of last.ckpt at the start of each step (checkpoint callbacks run last)."""

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            last = tmp_path / "ckpts" / "last.ckpt"
            seen.append((trainer.global_step, _saved_step(last) if last.exists() else None))

    seen: list[tuple[int, int | None]] = []
    checkpoint = ResumableCheckpoint(dirpath=tmp_path / "ckpts", last_every_n_train_steps=2)
    _trainer(tmp_path, [checkpoint, ReadLast(step=-1)]).fit(
        TinyRegressor(), RandomPairsDataModule(length=24, batch_size=4)
    )
    assert seen == [(0, None), (1, None), (2, 2), (3, 2), (4, 4), (5, 4)]
    assert _saved_step(tmp_path / "ckpts" / "last.ckpt") == 6  # and at the end of the epoch


def test_a_failure_after_the_first_step_saves_last_without_replacing_an_earlier_runs_file(tmp_path):
    stale = tmp_path / "ckpts" / "last.ckpt"
    stale.parent.mkdir()
    stale.write_bytes(b"an earlier run's checkpoint")
    checkpoint = ResumableCheckpoint(dirpath=tmp_path / "ckpts")
    with pytest.raises(RuntimeError, match="stopped at step 3"):
        _trainer(tmp_path, [checkpoint, StopAtStep(3, how="error")]).fit(
            TinyRegressor(), RandomPairsDataModule(length=24, batch_size=4)
        )
    assert stale.read_bytes() == b"an earlier run's checkpoint"
    assert checkpoint.last_model_path == str(tmp_path / "ckpts" / "last-v1.ckpt")
    assert _saved_step(tmp_path / "ckpts" / "last-v1.ckpt") == 3


def test_a_failure_before_the_first_step_saves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        _trainer(tmp_path, [ResumableCheckpoint(dirpath=tmp_path / "ckpts"), StopAtStep(0, how="error")]).fit(
            TinyRegressor(), RandomPairsDataModule()
        )
    assert not list((tmp_path / "ckpts").glob("*.ckpt")) if (tmp_path / "ckpts").exists() else True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"save_last": False}, "leave save_last unset"), ({"last_every_n_train_steps": 0}, "positive integer; got 0")],
)
def test_resumable_checkpoint_rejects_settings_that_would_not_keep_last(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResumableCheckpoint(**kwargs)


def _fit_config(tmp_path: Path, stop_at_step: int | None = None) -> Path:
    callbacks = [{"class_path": "viscy_utils.callbacks.ResumableCheckpoint", "init_args": {"save_top_k": 0}}]
    if stop_at_step is not None:
        stop = {"step": stop_at_step, "how": "error"}
        callbacks.append({"class_path": "viscy_utils.testing.callbacks.StopAtStep", "init_args": stop})
    config = {
        "trainer": {
            "accelerator": "cpu",
            "max_epochs": 2,
            "limit_val_batches": 0,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": _csv_logger(tmp_path / "logs"),
            "callbacks": callbacks,
        },
        "model": {"class_path": "viscy_utils.testing.TinyRegressor"},
        "data": {
            "class_path": "viscy_utils.testing.RandomPairsDataModule",
            "init_args": {"length": 16, "batch_size": 4},
        },
    }
    path = tmp_path / "fit.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_fit_ckpt_path_last_continues_the_interrupted_numbered_run(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(LOG_LEVEL_ENV, "INFO")
    with pytest.raises(RuntimeError, match="stopped at step 6"):
        main(["fit", "-c", str(_fit_config(tmp_path, stop_at_step=6))])
    last = tmp_path / "logs/run/version_0/checkpoints/last.ckpt"
    assert _saved_step(last) == 6
    assert torch.load(last, weights_only=False)["epoch"] == 1  # mid-epoch: the second epoch of 4 steps
    with caplog.at_level(logging.INFO):
        main(["fit", "-c", str(_fit_config(tmp_path)), "--ckpt_path", "last"])
    assert f"Resuming from {last}" in caplog.text
    assert sorted(path.name for path in (tmp_path / "logs/run").iterdir()) == ["version_0"]  # the same run
    assert _saved_step(last) == 8  # the 2 steps left, not 2 epochs from the start


def test_fit_ckpt_path_last_without_a_checkpoint_says_where_it_looked(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING):
        main(["fit", "-c", str(_fit_config(tmp_path)), "--ckpt_path", "last", "--trainer.max_epochs", "1"])
    assert (
        f"--ckpt_path last: no last checkpoint in {tmp_path / 'logs/run/*/checkpoints'}; "
        "training starts from the beginning." in caplog.text
    )
    assert _saved_step(tmp_path / "logs/run/version_0/checkpoints/last.ckpt") == 4


def test_a_missing_checkpoint_file_fails_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(_fit_config(tmp_path)), "--ckpt_path", "nowhere.ckpt"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"FileNotFoundError: ckpt_path 'nowhere.ckpt' does not exist (relative to {tmp_path})."
    assert not (tmp_path / "logs").exists()


def test_a_fit_failing_before_its_first_step_leaves_no_run_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match="stopped at step 0"):
        main(["fit", "-c", str(_fit_config(tmp_path, stop_at_step=0))])
    assert not (tmp_path / "logs").exists()  # regression: an empty logs/run/version_0 stayed behind
