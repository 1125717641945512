"""``dynaclr generate-prediction-scripts``: predict configs and sbatch scripts from a template."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

import dynaclr
from dynaclr.cli import dynaclr as dynaclr_group
from dynaclr.evaluation.generate_prediction_scripts import DEFAULT_TEMPLATE
from viscy_utils.testing.fixtures import synthetic_plate  # noqa: F401  (self-contained: no conftest needed)

EXAMPLE_PREDICT = Path(__file__).parents[1] / "examples" / "configs" / "predict.yml"


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(dynaclr_group, [str(arg) for arg in args])


@pytest.fixture
def inputs(tmp_path: Path, synthetic_plate) -> dict[str, Path]:  # noqa: F811
    checkpoint = tmp_path / "epoch=9.ckpt"
    checkpoint.write_bytes(b"not read by the generator")
    return {
        "ckpt": checkpoint,
        "plate": synthetic_plate.store_path,
        "tracks": synthetic_plate.tracks_path,
        "out": tmp_path / "predictions",
    }


def generate(inputs: dict[str, Path], *extra: str | Path) -> Result:
    return invoke(
        "generate-prediction-scripts",
        "--ckpt-path",
        inputs["ckpt"],
        "--data-path",
        inputs["plate"],
        "--tracks-path",
        inputs["tracks"],
        "-o",
        inputs["out"],
        *extra,
    )


def class_paths(node: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every ``{class_path, init_args}`` of a config, nested ones included."""
    if isinstance(node, dict):
        if "class_path" in node:
            yield node["class_path"], node.get("init_args") or {}
        for value in node.values():
            yield from class_paths(value)
    elif isinstance(node, list):
        for value in node:
            yield from class_paths(value)


def test_default_template_ships_inside_the_package() -> None:
    assert DEFAULT_TEMPLATE.is_file()
    assert DEFAULT_TEMPLATE.is_relative_to(Path(dynaclr.__file__).parent)


def test_writes_a_predict_config_and_an_sbatch_script_per_channel_set(inputs: dict[str, Path]) -> None:
    result = generate(
        inputs,
        "--channel",
        "sensor=Phase3D,GFP",
        "--channel",
        "organelle=Phase3D,Mito",
        "--partition",
        "gpu-a100",
        "--time",
        "02:30:00",
        "--cpus-per-task",
        "8",
    )
    assert result.exit_code == 0, result.output
    out = inputs["out"]
    assert sorted(path.name for path in out.iterdir()) == [
        "predict_organelle.sh",
        "predict_organelle.yml",
        "predict_sensor.sh",
        "predict_sensor.yml",
    ]
    template = yaml.safe_load(DEFAULT_TEMPLATE.read_text())
    for name, fluorescence in (("sensor", "GFP"), ("organelle", "Mito")):
        config = yaml.safe_load((out / f"predict_{name}.yml").read_text())
        data = config["data"]["init_args"]
        assert config["model"] == template["model"]
        assert config["ckpt_path"] == str(inputs["ckpt"])
        assert data["data_path"] == str(inputs["plate"])
        assert data["tracks_path"] == str(inputs["tracks"])
        assert data["source_channel"] == ["Phase3D", fluorescence]
        assert [norm["init_args"]["keys"] for norm in data["normalizations"]] == [["Phase3D"], [fluorescence]]
        assert data["z_range"] == template["data"]["init_args"]["z_range"]
        (writer,) = config["trainer"]["callbacks"]
        assert writer["class_path"] == "viscy_utils.callbacks.EmbeddingWriter"
        assert writer["init_args"]["output_path"] == str(out / f"embeddings_{name}.zarr")

        script = out / f"predict_{name}.sh"
        text = script.read_text()
        assert text.startswith("#!/bin/bash\n")
        for line in (
            "#SBATCH --gres=gpu:1",
            "#SBATCH --partition=gpu-a100",
            "#SBATCH --time=02:30:00",
            "#SBATCH --cpus-per-task=8",
            f"#SBATCH --job-name=dynaclr-predict-{name}",
            f"cd {out}",
            f"srun uv run --project {Path.cwd()} dynaclr predict -c predict_{name}.yml",
        ):
            assert line in text.splitlines(), f"{line!r} not in\n{text}"
        assert os.access(script, os.X_OK)
        assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    assert "submit with: sbatch" in result.output
    assert template == yaml.safe_load(DEFAULT_TEMPLATE.read_text())


def test_every_class_path_imports_and_takes_its_init_args(inputs: dict[str, Path]) -> None:
    assert generate(inputs, "--channel", "sensor=Phase3D,GFP").exit_code == 0
    config = yaml.safe_load((inputs["out"] / "predict_sensor.yml").read_text())
    found = list(class_paths(config))
    assert {path for path, _ in found} >= {
        "dynaclr.engine.ContrastiveModule",
        "viscy_models.contrastive.ContrastiveEncoder",
        "viscy_data.triplet.TripletDataModule",
        "viscy_utils.callbacks.EmbeddingWriter",
        "viscy_transforms.NormalizeSampled",
    }
    for class_path, init_args in found:
        module, _, name = class_path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        parameters = inspect.signature(cls).parameters
        unknown = set(init_args) - set(parameters)
        assert not unknown, f"{class_path} takes no {sorted(unknown)}"


def test_the_template_matches_the_example_predict_config() -> None:
    template = yaml.safe_load(DEFAULT_TEMPLATE.read_text())
    example = yaml.safe_load(EXAMPLE_PREDICT.read_text())
    assert template["model"]["init_args"]["encoder"] == example["model"]["init_args"]["encoder"]
    assert template["data"]["class_path"] == example["data"]["class_path"]
    for key in ("source_channel", "z_range", "normalizations"):
        assert template["data"]["init_args"][key] == example["data"]["init_args"][key]


def test_generated_config_parses_with_dynaclr_predict(inputs: dict[str, Path]) -> None:
    assert generate(inputs, "--channel", "sensor=Phase3D,GFP").exit_code == 0
    result = invoke("predict", "-c", inputs["out"] / "predict_sensor.yml", "--print_config")
    assert result.exit_code == 0, result.output
    parsed = yaml.safe_load(result.stdout)
    assert parsed["model"]["class_path"] == "dynaclr.engine.ContrastiveModule"
    assert parsed["data"]["init_args"]["source_channel"] == ["Phase3D", "GFP"]
    assert parsed["ckpt_path"] == str(inputs["ckpt"])


def test_one_channel_template_with_one_channel_sets(tmp_path: Path, inputs: dict[str, Path]) -> None:
    template = yaml.safe_load(DEFAULT_TEMPLATE.read_text())
    template["model"]["init_args"]["encoder"]["init_args"]["in_channels"] = 1
    data = template["data"]["init_args"]
    data["source_channel"] = ["Phase3D"]
    data["normalizations"] = data["normalizations"][:1]
    data["augmentations"] = [{"class_path": "viscy_transforms.BatchedRandFlipd", "init_args": {"keys": "Phase3D"}}]
    template_path = tmp_path / "one_channel.yml"
    template_path.write_text(yaml.safe_dump(template))
    result = generate(inputs, "--template", template_path, "--channel", "phase=Phase3D", "--channel", "sensor=GFP")
    assert result.exit_code == 0, result.output
    sensor = yaml.safe_load((inputs["out"] / "predict_sensor.yml").read_text())["data"]["init_args"]
    assert sensor["source_channel"] == ["GFP"]
    assert sensor["normalizations"][0]["init_args"]["keys"] == ["GFP"]
    assert sensor["augmentations"][0]["init_args"]["keys"] == ["GFP"]
    assert f"from the template {template_path}" in (inputs["out"] / "predict_sensor.yml").read_text()


def test_channel_count_must_match_the_template(inputs: dict[str, Path]) -> None:
    result = generate(inputs, "--channel", "phase=Phase3D")
    assert result.exit_code == 1
    assert "lists 1 channel(s) ['Phase3D']" in result.output
    assert "source_channel: ['Phase3D', 'RFP']" in result.output
    assert not inputs["out"].exists()


@pytest.mark.parametrize("value", ["Phase3D", "=Phase3D", "phase=", "a/b=Phase3D"])
def test_malformed_channel_set_is_a_usage_error(inputs: dict[str, Path], value: str) -> None:
    result = generate(inputs, "--channel", value)
    assert result.exit_code == 2
    assert "is not NAME=CHANNEL[,CHANNEL...]" in result.output


def test_repeated_channel_set_names_are_refused(inputs: dict[str, Path]) -> None:
    result = generate(inputs, "--channel", "a=Phase3D,GFP", "--channel", "a=Phase3D,RFP")
    assert result.exit_code == 1
    assert "repeated: ['a']" in result.output


def test_template_transform_keys_must_be_template_channels(tmp_path: Path, inputs: dict[str, Path]) -> None:
    template = yaml.safe_load(DEFAULT_TEMPLATE.read_text())
    template["data"]["init_args"]["normalizations"][1]["init_args"]["keys"] = ["mCherry"]
    template_path = tmp_path / "bad.yml"
    template_path.write_text(yaml.safe_dump(template))
    result = generate(inputs, "--template", template_path, "--channel", "sensor=Phase3D,GFP")
    assert result.exit_code == 1
    assert "data.init_args.normalizations[1]" in result.output
    assert "['mCherry']" in result.output


def test_template_without_embedding_writer_is_refused(tmp_path: Path, inputs: dict[str, Path]) -> None:
    template = yaml.safe_load(DEFAULT_TEMPLATE.read_text())
    template["trainer"]["callbacks"] = []
    template_path = tmp_path / "no_writer.yml"
    template_path.write_text(yaml.safe_dump(template))
    result = generate(inputs, "--template", template_path, "--channel", "sensor=Phase3D,GFP")
    assert result.exit_code == 1
    assert "exactly one EmbeddingWriter" in result.output


def test_refuses_to_overwrite_without_the_flag(inputs: dict[str, Path]) -> None:
    assert generate(inputs, "--channel", "sensor=Phase3D,GFP").exit_code == 0
    edited = inputs["out"] / "predict_sensor.sh"
    edited.write_text("#!/bin/bash\n# my edits\n")
    result = generate(inputs, "--channel", "sensor=Phase3D,GFP", "--channel", "organelle=Phase3D,Mito")
    assert result.exit_code == 1
    assert "Refusing to overwrite" in result.output
    assert str(edited) in result.output
    assert edited.read_text() == "#!/bin/bash\n# my edits\n"
    assert not (inputs["out"] / "predict_organelle.yml").exists()
    result = generate(inputs, "--channel", "sensor=Phase3D,GFP", "--overwrite")
    assert result.exit_code == 0, result.output
    assert "srun uv run" in edited.read_text()


def test_runs_in_a_subprocess_without_importing_torch(inputs: dict[str, Path]) -> None:
    code = (
        "import sys\nfrom dynaclr.cli import dynaclr\n"
        "dynaclr.main(sys.argv[1:], prog_name='dynaclr', standalone_mode=False)\n"
        "print('torch imported:', 'torch' in sys.modules)"
    )
    args = ["--ckpt-path", inputs["ckpt"], "--data-path", inputs["plate"], "--tracks-path", inputs["tracks"]]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "generate-prediction-scripts",
            *map(str, args),
            "-o",
            str(inputs["out"]),
            "--channel",
            "sensor=Phase3D,GFP",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "torch imported: False" in result.stdout
    assert (inputs["out"] / "predict_sensor.yml").is_file()
