"""TRAIN-01/02 and DDP: the example configs through the real ``dynaclr fit`` command on the example plate."""

from __future__ import annotations

import csv
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dynaclr.engine import ContrastiveModule
from viscy_utils.testing.fixtures import run_command

from .conftest import CONFIGS

FIT = [str(CONFIGS / "fit.yml"), str(CONFIGS / "fit_synthetic_cpu.yml")]
PREDICT = [str(CONFIGS / "predict.yml"), str(CONFIGS / "predict_synthetic_cpu.yml")]
LIGHTNING_CONFIGS = {
    "fit.yml": FIT,
    "predict.yml": PREDICT,
    "export_onnx.yml": [str(CONFIGS / "export_onnx.yml")],
}
"""Each example LightningCLI config, with the overrides that fit it to the example plate."""

SHORT_RUN = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=2",
    "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
    "--trainer.logger.save_dir=logs",
]
NTXENT = ["--model.init_args.loss_function=pytorch_metric_learning.losses.NTXentLoss"]


def _config_args(paths: list[str]) -> list[str]:
    return [argument for path in paths for argument in ("-c", path)]


def _metrics(log_root: Path) -> list[dict[str, str]]:
    (metrics_file,) = log_root.rglob("metrics.csv")
    with metrics_file.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("loss", ["triplet", "ntxent"])
def test_fit_yml_fast_dev_run(example_workdir, dynaclr, loss):
    dynaclr("fit", *_config_args(FIT), "--trainer.fast_dev_run=true", *(NTXENT if loss == "ntxent" else []))


@pytest.mark.parametrize("loss", ["triplet", "ntxent"])
def test_fit_yml_trains_logs_and_checkpoints(example_workdir, dynaclr, loss):
    dynaclr("fit", *_config_args(FIT), *SHORT_RUN, *(NTXENT if loss == "ntxent" else []))
    rows = _metrics(example_workdir / "logs")
    train_losses = [float(row["loss/train_step"]) for row in rows if row.get("loss/train_step")]
    val_losses = [float(row["loss/val"]) for row in rows if row.get("loss/val")]
    assert len(train_losses) == 2
    assert len(val_losses) == 1
    assert all(torch.isfinite(torch.tensor(train_losses + val_losses)))
    negative_metric = "metrics/cosine_similarity/negative_mean/val" if loss == "ntxent" else None
    if negative_metric:
        assert any(row.get(negative_metric) for row in rows)
    (checkpoint,) = (example_workdir / "logs").rglob("last.ckpt")
    state_dict = torch.load(checkpoint, weights_only=True, map_location="cpu")["state_dict"]
    assert all(key.startswith(("model.", "loss_function.")) for key in state_dict)
    hyperparameters = yaml.safe_load(next((example_workdir / "logs").rglob("config.yaml")).read_text())
    assert hyperparameters["model"]["init_args"]["encoder"]["init_args"]["backbone"] == "convnext_atto"


def _deep_merge(base: Any, override: Any) -> Any:
    """Merge YAML documents as LightningCLI merges several ``-c`` configs: mappings key by key."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return override
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _deep_merge(base.get(key), value)
    return merged


def _instantiate(node: Any) -> Any:
    """Import every ``class_path`` and build it from its ``init_args``, innermost first."""
    if isinstance(node, list):
        return [_instantiate(item) for item in node]
    if isinstance(node, dict) and "class_path" in node:
        module_name, _, class_name = node["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name)
        init_args = {key: _instantiate(value) for key, value in (node.get("init_args") or {}).items()}
        parameters = inspect.signature(cls).parameters
        takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())
        unknown = set() if takes_any else set(init_args) - set(parameters)
        assert not unknown, f"{node['class_path']} has no arguments {sorted(unknown)}"
        return cls(**init_args)
    if isinstance(node, dict):
        return {key: _instantiate(value) for key, value in node.items()}
    return node


def _class_paths(node: Any) -> list[str]:
    if isinstance(node, list):
        return [path for item in node for path in _class_paths(item)]
    if isinstance(node, dict):
        own = [node["class_path"]] if "class_path" in node else []
        return own + [path for value in node.values() for path in _class_paths(value)]
    return []


@pytest.mark.parametrize("name", sorted(LIGHTNING_CONFIGS))
def test_every_class_path_of_the_example_configs_imports_and_instantiates(example_workdir, name):
    config: Any = {}
    for path in LIGHTNING_CONFIGS[name]:
        config = _deep_merge(config, yaml.safe_load(Path(path).read_text()))
    paths = _class_paths(config)
    assert "dynaclr.engine.ContrastiveModule" in paths
    built = _instantiate({key: config[key] for key in ("model", "data", "trainer") if key in config})
    assert isinstance(built["model"], ContrastiveModule)
    if "data" in built:
        built["data"].setup("fit" if name == "fit.yml" else "predict")


@pytest.mark.parametrize("name", ["fit.yml", "predict.yml"])
def test_example_configs_parse_with_the_lightning_cli_unchanged(example_workdir, dynaclr, capsys, name):
    subcommand = name.removesuffix(".yml")
    dynaclr(subcommand, "-c", str(CONFIGS / name), "--print_config")
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "dynaclr.engine.ContrastiveModule"
    assert printed["data"]["class_path"] == "viscy_data.triplet.TripletDataModule"
    assert printed["model"]["init_args"]["encoder"]["init_args"]["in_stack_depth"] == 30


@pytest.mark.slow
def test_two_process_ddp_fit_logs_one_validation_loss(example_workdir):
    result = run_command(
        "dynaclr.cli",
        "fit",
        *_config_args(FIT),
        *SHORT_RUN,
        *NTXENT,
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        cwd=example_workdir,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _metrics(example_workdir / "logs")
    val_losses = [float(row["loss/val"]) for row in rows if row.get("loss/val")]
    assert len(val_losses) == 1
    assert torch.isfinite(torch.tensor(val_losses[0]))
    train_rows = [row for row in rows if row.get("loss/train_step")]
    assert len(train_rows) == 2
