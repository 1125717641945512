"""The README's walk-through, command by command, exactly as written (run in-process to save start-up time)."""

from __future__ import annotations

import re
import runpy
import shlex
import sys
from pathlib import Path

import anndata as ad
import pytest

from dynaclr.cli import main as dynaclr_main

APPLICATION = Path(__file__).resolve().parents[1]
README = APPLICATION / "README.md"
REPOSITORY = APPLICATION.parents[1]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)


def _walkthrough_commands() -> list[list[str]]:
    """The ``uv run`` commands of the README, without installs and without the test command itself."""
    commands = []
    for block in _blocks("sh"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] == ["uv", "run"] and "pytest" not in words:
                commands.append(words[2:])
    return commands


def _invoke(command: list[str]) -> None:
    """Run ``python SCRIPT ARGS`` or ``dynaclr ARGS``; both end in SystemExit."""
    if command[0] == "python":
        runpy.run_path(command[1], run_name="__main__")
    else:
        dynaclr_main(command[1:])


def _run(command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert command[0] in ("python", "dynaclr"), command
    monkeypatch.setattr(sys, "argv", command[1:] if command[0] == "python" else command)
    with pytest.raises(SystemExit) as exit_:
        _invoke(command)
    assert exit_.value.code in (0, None), f"{shlex.join(command)} exited with {exit_.value.code}"


def test_readme_names_the_walkthrough_commands():
    programs = [command[:2] for command in _walkthrough_commands()]
    assert programs == [
        ["python", "applications/dynaclr/examples/make_synthetic_data.py"],
        ["dynaclr", "fit"],
        ["dynaclr", "predict"],
        ["dynaclr", "train-linear-classifier"],
        ["dynaclr", "apply-linear-classifier"],
        ["python", "applications/dynaclr/examples/make_synthetic_experiments.py"],
        ["dynaclr", "fit"],
    ]


@pytest.mark.slow
def test_readme_walkthrough_runs_from_the_repository_root(tmp_path, monkeypatch):
    (tmp_path / "applications").symlink_to(REPOSITORY / "applications", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for command in _walkthrough_commands():
        _run(command, monkeypatch)
    assert (tmp_path / "logs" / "lightning_logs" / "dynaclr_fit" / "checkpoints" / "last.ckpt").is_file()
    multi_experiment = tmp_path / "logs" / "lightning_logs" / "dynaclr_multi_experiment" / "checkpoints"
    assert (multi_experiment / "last.ckpt").is_file()
    embeddings = ad.read_zarr(tmp_path / "embeddings.zarr")
    assert {"X_projections", "X_pca", "X_phate"} <= set(embeddings.obsm)
    predicted = ad.read_zarr(tmp_path / "embeddings_infection_state.zarr")
    assert predicted.n_obs == embeddings.n_obs
    classes = {str(label) for label in predicted.uns["predicted_infection_state_classes"]}
    assert len(classes) == 2
    predictions = predicted.obs["predicted_infection_state"]
    assert predictions.notna().all()
    assert {str(label) for label in predictions} <= classes


def test_readme_python_example_runs(capsys):
    (block,) = _blocks("python")
    exec(compile(block, str(README), "exec"), {})
    assert capsys.readouterr().out.strip() == "torch.Size([8, 320]) torch.Size([8, 32])"
