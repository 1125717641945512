"""Every failure of the ``viscy`` command ends in one line: argument and config typos, read errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from torch.utils.data import DataLoader, Dataset

from viscy_data.read_errors import ArrayReadError
from viscy_utils.argument_errors import closest
from viscy_utils.cli import _last_line, main


def _config(tmp_path: Path, trainer: dict | None = None, data: dict | None = None) -> Path:
    config = {
        "trainer": {
            "accelerator": "cpu",
            "max_epochs": 1,
            "logger": False,
            "enable_checkpointing": False,
            **(trainer or {}),
        },
        "model": {"class_path": "viscy_utils.testing.TinyRegressor"},
        "data": {"class_path": "viscy_utils.testing.RandomPairsDataModule", "init_args": data or {}},
    }
    path = tmp_path / "fit.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _last_stderr_line(capsys: pytest.CaptureFixture, args: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "usage:" not in err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("config", "extra_args", "expected"),
    [
        (
            {"data": {"batchsize": 2}},
            [],
            "data (viscy_utils.testing.RandomPairsDataModule) has no argument 'batchsize'; did you mean 'batch_size'?",
        ),
        (
            {"trainer": {"max_epoch": 2}},
            [],
            "fit has no option 'trainer.max_epoch'; did you mean 'trainer.max_epochs'?",
        ),
        (
            {},
            ["--trainer.max_epochz", "2"],
            "fit has no option 'trainer.max_epochz'; did you mean 'trainer.max_epochs'?",
        ),
        (
            {},
            ["--model.init_args.lrr", "0.1"],
            "model (viscy_utils.testing.TinyRegressor) has no argument 'lrr'; did you mean 'lr'?",
        ),
    ],
)
def test_a_misspelt_key_ends_in_one_line_naming_the_key_meant(tmp_path, capsys, config, extra_args, expected):
    # regression: exit status 2 after about 50 lines of usage text, with no suggestion
    args = ["fit", "-c", str(_config(tmp_path, **config)), *extra_args]
    assert _last_stderr_line(capsys, args) == expected


def test_a_misspelt_subcommand_names_the_subcommand_meant(tmp_path, capsys):
    line = _last_stderr_line(capsys, ["fitt", "-c", str(_config(tmp_path))])
    assert line.startswith("'fitt' is not a subcommand; did you mean 'fit'? (subcommands: fit, validate, test, predict")


def test_closest_suggests_only_likely_typos():
    assert closest("batchsize", ["batch_size", "num_workers"]) == "batch_size"
    assert closest("zzz", ["batch_size", "num_workers"]) is None


class _BrokenChunks(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        raise ArrayReadError(f"Cannot read time point {index} of array '0' of FOV 'A/1/0' in store 'plate.zarr'")


def test_a_read_error_from_a_dataloader_worker_is_reported_by_its_own_last_line():
    # torch re-raises a worker's error with the worker's traceback in its message
    with pytest.raises(ArrayReadError) as error_info:
        next(iter(DataLoader(_BrokenChunks(), num_workers=1)))
    assert "Traceback" in str(error_info.value)
    assert _last_line(error_info.value) == (
        "ArrayReadError: Cannot read time point 0 of array '0' of FOV 'A/1/0' in store 'plate.zarr'"
    )
