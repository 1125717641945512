"""The ``dynaclr`` command: a light package root, and Lightning's subcommands handed to the viscy CLI."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import dynaclr
from dynaclr.cli import COMMANDS, LIGHTNING_SUBCOMMANDS
from viscy_utils.cli import SUBCOMMAND_HELP
from viscy_utils.testing.fixtures import run_command, run_in_fresh_interpreter

from .conftest import CONFIGS


def test_importing_the_package_root_does_not_import_torch():
    code = "import sys, dynaclr; print('torch' in sys.modules, dynaclr.__all__[0])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "ContrastiveModule"]


def test_package_root_exports_resolve_to_their_modules():
    from dynaclr.engine import ContrastiveModule
    from dynaclr.multi_modal import JointContrastiveModule

    assert dynaclr.ContrastiveModule is ContrastiveModule
    assert dynaclr.MultiModalContrastiveModule is JointContrastiveModule
    assert set(dynaclr.__all__) <= set(dir(dynaclr))
    v22 = {
        "MultiExperimentIndex": "dynaclr.index",
        "MultiExperimentTripletDataset": "dynaclr.dataset",
        "MultiExperimentDataModule": "dynaclr.datamodule",
        "ExperimentRegistry": "dynaclr.experiment",
        "NTXentHCL": "dynaclr.loss",
        "sample_tau": "dynaclr.tau_sampling",
    }
    for name, module in v22.items():
        assert getattr(dynaclr, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="has no attribute 'Missing'"):
        _ = dynaclr.Missing


def test_every_command_is_listed_in_order():
    from click.testing import CliRunner

    from dynaclr.cli import dynaclr as group

    result = CliRunner().invoke(group, ["--help"])
    assert result.exit_code == 0
    lines = result.output.split("Commands:")[1].splitlines()
    listed = [line.split()[0] for line in lines if line.startswith("  ") and not line.startswith("   ")]
    assert listed == [*LIGHTNING_SUBCOMMANDS, *COMMANDS]


def _dynaclr_in_a_fresh_process(*args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``dynaclr ARGS`` in a fresh interpreter; return the process and which of torch and MONAI it imported."""
    return run_in_fresh_interpreter("dynaclr", "dynaclr.cli", *args)


@pytest.mark.parametrize("name", list(LIGHTNING_SUBCOMMANDS))
def test_lightning_subcommand_help_is_static_and_imports_neither_torch_nor_monai(name, tmp_path):
    # regression: `dynaclr fit --help` imported torch, Lightning and MONAI first (about 15 s)
    config = tmp_path / f"{name}.yml"
    config.write_text("trainer: {max_epochs: 1}\n")
    for args in ([name, "--help"], [name, "-c", str(config), "--help"]):
        result, heavy = _dynaclr_in_a_fresh_process(*args)
        assert result.returncode == 0, result.stderr
        assert heavy == []
        assert result.stdout.startswith(f"usage: dynaclr {name} ")
        assert SUBCOMMAND_HELP[name] in result.stdout
        for option in ("-c, --config", "--print_config", "--trainer.KEY VALUE", "--model", "--data", "--ckpt_path"):
            assert option in result.stdout
        assert f"`dynaclr {name} --help-all`" in result.stdout


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_help_imports_neither_torch_nor_monai(name):
    # regression: the linear-classifier commands imported MONAI (through viscy_data) and torch for --help
    from dynaclr.cli import dynaclr as group

    result, heavy = _dynaclr_in_a_fresh_process(name, "--help")
    assert result.returncode == 0, result.stderr
    assert heavy == []
    assert result.stdout.startswith(f"Usage: dynaclr {name} ")
    command = group.commands[name]._load()
    description = command.help.split("\n\n")[0]
    assert " ".join(description.split()) in " ".join(result.stdout.split())
    for parameter in command.params:
        for option in parameter.opts:
            assert option in result.stdout


@pytest.mark.slow
def test_fit_help_all_is_the_lightning_cli_help():
    result = run_command("dynaclr.cli", "fit", "--help-all")
    assert result.returncode == 0, result.stderr
    assert "--trainer.max_epochs" in result.stdout
    assert "--model" in result.stdout
    assert "--ckpt_path" in result.stdout


def test_lightning_flags_pass_through_unchanged(example_workdir, dynaclr, capsys):
    dynaclr(
        "fit",
        "-c",
        str(CONFIGS / "fit.yml"),
        "--trainer.max_epochs=7",
        "--model.init_args.lr=0.5",
        "--print_config",
    )
    printed = capsys.readouterr().out
    assert "max_epochs: 7" in printed
    assert "lr: 0.5" in printed


@pytest.mark.slow
def test_a_config_mistake_ends_in_one_line_naming_the_cause(example_workdir):
    result = run_command(
        "dynaclr.cli",
        "fit",
        "-c",
        str(CONFIGS / "fit.yml"),
        "-c",
        str(CONFIGS / "fit_synthetic_cpu.yml"),
        "--data.init_args.source_channel=[Phase3D, GPF]",
        cwd=example_workdir,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert "GPF" in last_line
    assert "Phase3D" in last_line
    assert "RFP" in last_line
