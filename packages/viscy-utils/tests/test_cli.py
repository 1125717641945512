import inspect
import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from viscy_data.normalization import read_norm_meta
from viscy_data.ome_compat import open_ome_zarr
from viscy_utils.cli import LOG_LEVEL_ENV, SUBCOMMAND_HELP, VISCY_SUBCOMMANDS
from viscy_utils.cli_help import HELP_ALL_OPTION, SUBCOMMAND_ARGUMENTS, subcommand_help
from viscy_utils.testing.fixtures import run_in_fresh_interpreter


@pytest.mark.slow
def test_fit_help_all_in_a_subprocess_is_the_lightning_cli_help(run_viscy):
    result = run_viscy("fit", "--help-all")
    assert result.returncode == 0, result.stderr
    assert "--model" in result.stdout
    assert "--trainer.max_epochs" in result.stdout
    assert "default: 42" in result.stdout  # seed_everything


def test_help_lists_all_subcommands(viscy, capsys):
    with pytest.raises(SystemExit) as exit_info:
        viscy("--help")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for subcommand in ("fit", "validate", "test", "predict", *VISCY_SUBCOMMANDS):
        assert subcommand in out


@pytest.mark.parametrize(
    ("subcommand", "expected"),
    [
        ("predict", "--ckpt_path"),
        ("preprocess", "--block_size"),
        ("export", "--export_path"),
        ("precompute", "--divisors"),
        ("convert_to_anndata", "--output_anndata_path"),
    ],
)
def test_subcommand_help(viscy, capsys, subcommand, expected):
    with pytest.raises(SystemExit) as exit_info:
        viscy(subcommand, "--help")
    assert exit_info.value.code == 0
    assert expected in capsys.readouterr().out


def test_console_script_is_declared():
    from importlib.metadata import entry_points

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "viscy"]
    assert script.value == "viscy_utils.cli:main"


def test_invalid_log_level_names_valid_levels(viscy, monkeypatch):
    monkeypatch.setenv(LOG_LEVEL_ENV, "LOUD")
    with pytest.raises(ValueError, match="valid levels"):
        viscy("--help")


def test_log_level_from_environment(viscy, monkeypatch):
    monkeypatch.setenv(LOG_LEVEL_ENV, "debug")
    with pytest.raises(SystemExit):
        viscy("--help")
    assert logging.getLogger("viscy_utils").level == logging.DEBUG
    assert logging.getLogger("lightning.pytorch").level == logging.DEBUG


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_fit_from_yaml_twice_into_the_same_log_dir(tmp_path, monkeypatch, viscy):
    monkeypatch.chdir(tmp_path)
    config = _write(
        tmp_path / "fit.yml",
        f"""
        trainer:
          accelerator: cpu
          max_epochs: 1
          limit_train_batches: 2
          limit_val_batches: 1
          default_root_dir: {tmp_path / "logs"}
          enable_progress_bar: false
          logger:
            class_path: lightning.pytorch.loggers.TensorBoardLogger
            init_args:
              save_dir: {tmp_path / "logs"}
              name: run
              version: fixed
        model:
          class_path: viscy_utils.testing.TinyRegressor
        data:
          class_path: viscy_utils.testing.RandomPairsDataModule
        """,
    )
    for _ in range(2):  # regression: a second run into an existing log directory crashed on config.yaml
        viscy("fit", "-c", str(config))
    saved = yaml.safe_load((tmp_path / "logs" / "run" / "fixed" / "config.yaml").read_text())
    assert saved["seed_everything"] == 42
    assert saved["model"]["class_path"] == "viscy_utils.testing.TinyRegressor"
    assert list((tmp_path / "logs" / "run" / "fixed" / "checkpoints").glob("*.ckpt"))


def test_default_logger_is_tensorboard_in_default_root_dir(tmp_path, monkeypatch, viscy):
    monkeypatch.chdir(tmp_path)
    config = _write(
        tmp_path / "fit.yml",
        f"""
        trainer:
          accelerator: cpu
          max_epochs: 1
          limit_train_batches: 1
          limit_val_batches: 0
          enable_progress_bar: false
          default_root_dir: {tmp_path / "root"}
        model:
          class_path: viscy_utils.testing.TinyRegressor
        data:
          class_path: viscy_utils.testing.RandomPairsDataModule
        """,
    )
    viscy("fit", "-c", str(config))
    (version,) = (tmp_path / "root" / "lightning_logs").iterdir()
    assert len(version.name) == len("YYYYmmdd-HHMMSS")
    assert list(version.glob("events.out.tfevents.*"))
    assert (version / "config.yaml").exists()


def test_missing_optional_logger_falls_back_to_tensorboard(tmp_path, monkeypatch, caplog, viscy):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real_find_spec(name, *a)
    )
    monkeypatch.chdir(tmp_path)
    config = _write(
        tmp_path / "fit.yml",
        f"""
        trainer:
          accelerator: cpu
          max_epochs: 1
          limit_train_batches: 1
          limit_val_batches: 0
          enable_progress_bar: false
          default_root_dir: {tmp_path}
          logger:
            class_path: lightning.pytorch.loggers.WandbLogger
            init_args:
              project: nowhere
        model:
          class_path: viscy_utils.testing.TinyRegressor
        data:
          class_path: viscy_utils.testing.RandomPairsDataModule
        """,
    )
    with caplog.at_level(logging.WARNING, logger="viscy_utils"):
        viscy("fit", "-c", str(config))
    assert "wandb" in caplog.text
    assert "TensorBoard" in caplog.text
    assert list((tmp_path / "lightning_logs").glob("*/events.out.tfevents.*"))


def test_preprocess_writes_statistics_that_match_numpy(tmp_path, synthetic_plate, viscy):
    import shutil

    plate_path = tmp_path / "plate.zarr"
    shutil.copytree(synthetic_plate.store_path, plate_path)
    with open_ome_zarr(plate_path, layout="hcs", mode="r+") as plate:  # start from no metadata
        for node in [plate, *(position for _, position in plate.positions())]:
            node.zattrs.pop("normalization", None)
    viscy(
        "preprocess",
        "--data_path",
        str(plate_path),
        "--channel_names",
        "[GFP]",
        "--num_workers",
        "2",
        "--block_size",
        "4",
    )
    with open_ome_zarr(plate_path, layout="hcs", mode="r") as plate:
        plate_meta = read_norm_meta(plate)
        assert list(plate_meta) == ["GFP"]
        channel = list(plate.channel_names).index("GFP")
        samples, per_t = {}, {}
        for name, position in plate.positions():
            pixels = np.asarray(position["0"][:, channel, :, ::4, ::4], dtype=np.float32)
            samples[name] = pixels
            meta = read_norm_meta(position)["GFP"]
            assert meta["fov_statistics"]["mean"].item() == pytest.approx(pixels.mean(), rel=1e-5)
            assert meta["fov_statistics"]["median"].item() == pytest.approx(np.median(pixels), rel=1e-5)
            # regression: per-FOV timepoint statistics were copies of the dataset-level ones
            for t in range(pixels.shape[0]):
                assert meta["timepoint_statistics"][str(t)]["mean"].item() == pytest.approx(pixels[t].mean(), rel=1e-5)
                per_t.setdefault(t, []).append(pixels[t].ravel())
        everything = np.concatenate([p.ravel() for p in samples.values()])
        dataset = plate_meta["GFP"]["dataset_statistics"]
        assert dataset["mean"].item() == pytest.approx(everything.mean(), rel=1e-5)
        assert dataset["std"].item() == pytest.approx(everything.std(), rel=1e-4)
        assert dataset["p99"].item() == pytest.approx(np.percentile(everything, 99), rel=1e-5)
        assert dataset["iqr"].item() == pytest.approx(np.subtract(*np.percentile(everything, [75, 25])), rel=1e-5)
        for t, values in per_t.items():
            expected = np.concatenate(values)
            assert plate_meta["GFP"]["timepoint_statistics"][str(t)]["median"].item() == pytest.approx(
                np.median(expected), rel=1e-5
            )
        name = next(iter(samples))
        assert read_norm_meta(plate[name])["GFP"]["dataset_statistics"]["mean"].item() == pytest.approx(
            everything.mean(), rel=1e-5
        )


def test_preprocess_unknown_channel_lists_channels(synthetic_plate, viscy):
    with pytest.raises(ValueError, match=r"\['DAPI'\].*Phase3D"):
        viscy("preprocess", "--data_path", str(synthetic_plate.store_path), "--channel_names", "[DAPI]")


def test_export_onnx_matches_torch(tmp_path, viscy):
    import onnxruntime

    from viscy_utils.testing import TinyRegressor

    model = TinyRegressor(in_channels=2, out_channels=1, depth=3)
    torch.nn.init.normal_(model.conv.weight)
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    config = _write(
        tmp_path / "export.yml",
        f"""
        model:
          class_path: viscy_utils.testing.TinyRegressor
          init_args:
            in_channels: 2
            depth: 3
        export_path: {tmp_path / "model.onnx"}
        ckpt_path: {ckpt}
        """,
    )
    viscy("export", "-c", str(config))
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    x = torch.rand(3, 2, 3, 24, 20)  # batch and YX differ from the example input: dynamic axes
    (onnx_out,) = session.run(["output"], {"input": x.numpy()})
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    np.testing.assert_allclose(onnx_out, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        viscy("export", "-c", str(config))


def test_export_unwraps_a_torch_compiled_module(tmp_path):
    """A torch.compile'd module exports like the module it wraps (public Lightning API, no torch._dynamo)."""
    from viscy_utils.testing import TinyRegressor
    from viscy_utils.trainer import VisCyTrainer

    model = TinyRegressor(in_channels=2, out_channels=1, depth=3)
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    trainer = VisCyTrainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.export(torch.compile(model), tmp_path / "compiled.onnx", ckpt)
    assert (tmp_path / "compiled.onnx").stat().st_size > 0


def test_export_loads_checkpoint_strictly(tmp_path):
    from viscy_utils.testing import TinyRegressor
    from viscy_utils.trainer import VisCyTrainer

    ckpt = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {"conv.weight": torch.zeros(1, 1, 1, 1, 1)}}, ckpt)
    trainer = VisCyTrainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(RuntimeError, match="Missing key"):
        trainer.export(TinyRegressor(), tmp_path / "m.onnx", ckpt)
    with pytest.raises(NotImplementedError, match="'torchscript'"):
        trainer.export(TinyRegressor(), tmp_path / "m.pt", ckpt, format="torchscript")


def _fit_config(tmp_path: Path, lr: float, max_epochs: int, ckpt_path: Path | None = None) -> Path:
    ckpt_line = f"ckpt_path: {ckpt_path}" if ckpt_path else ""
    return _write(
        tmp_path / f"fit_{lr}_{max_epochs}.yml",
        f"""
        trainer:
          accelerator: cpu
          max_epochs: {max_epochs}
          limit_train_batches: 1
          limit_val_batches: 1
          enable_progress_bar: false
          default_root_dir: {tmp_path}
        model:
          class_path: viscy_utils.testing.TinyRegressor
          init_args:
            lr: {lr}
        data:
          class_path: viscy_utils.testing.RandomPairsDataModule
        {ckpt_line}
        """,
    )


def test_checkpoint_hyperparameters_apply_to_fit_only(tmp_path, monkeypatch, viscy):
    # regression: checkpoint hparams overwrote the user's model arguments in predict/test/validate
    monkeypatch.chdir(tmp_path)
    viscy("fit", "-c", str(_fit_config(tmp_path, lr=0.5, max_epochs=1)))
    (ckpt,) = tmp_path.glob("lightning_logs/*/checkpoints/*.ckpt")
    validate = _fit_config(tmp_path, lr=0.1, max_epochs=1, ckpt_path=ckpt)
    cli = viscy("validate", "-c", str(validate))
    assert cli.model.hparams.lr == 0.1
    cli = viscy("fit", "-c", str(_fit_config(tmp_path, lr=0.1, max_epochs=2, ckpt_path=ckpt)))
    assert cli.model.hparams.lr == 0.5
    assert cli.trainer.current_epoch == 2


def test_unparsable_checkpoint_hyperparameters_do_not_abort_fit(tmp_path, monkeypatch, viscy, caplog):
    from viscy_utils.testing import TinyRegressor

    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "odd.ckpt"
    viscy("fit", "-c", str(_fit_config(tmp_path, lr=0.5, max_epochs=1)))
    (trained,) = tmp_path.glob("lightning_logs/*/checkpoints/*.ckpt")
    checkpoint = torch.load(trained, weights_only=False)
    checkpoint["hyper_parameters"] = {"lr": "fast"}  # not a float: the parser exits
    torch.save(checkpoint, ckpt)
    with caplog.at_level(logging.WARNING, logger="viscy_utils"):
        cli = viscy("fit", "-c", str(_fit_config(tmp_path, lr=0.1, max_epochs=2, ckpt_path=ckpt)))
    assert "hyperparameters" in caplog.text
    assert isinstance(cli.model, TinyRegressor)
    assert cli.model.hparams.lr == 0.1


def _tiny_fit_settings(root: Path) -> dict:
    return {
        "trainer": {
            "accelerator": "cpu",
            "fast_dev_run": True,
            "enable_progress_bar": False,
            "default_root_dir": str(root),
        },
        "model": {"class_path": "viscy_utils.testing.TinyRegressor"},
        "data": {"class_path": "viscy_utils.testing.RandomPairsDataModule"},
    }


def test_option_value_named_like_a_subcommand_is_not_the_subcommand(tmp_path, monkeypatch, viscy):
    # regression: `--trainer.default_root_dir preprocess` made the CLI drop the model and data
    monkeypatch.chdir(tmp_path)
    config = _fit_config(tmp_path, lr=0.1, max_epochs=1)
    cli = viscy("fit", "-c", str(config), "--trainer.default_root_dir", "preprocess")
    assert cli.subcommand == "fit"
    assert cli.trainer.state.finished
    assert list((tmp_path / "preprocess" / "lightning_logs").glob("*/checkpoints/*.ckpt"))


def test_config_before_the_subcommand(tmp_path, monkeypatch, viscy):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "top.yml"
    config.write_text(yaml.safe_dump({"fit": _tiny_fit_settings(tmp_path / "preprocess")}))
    cli = viscy("--config", str(config), "fit")
    assert cli.subcommand == "fit"
    assert cli.trainer.state.finished


def test_subcommand_chosen_by_the_config_file(tmp_path, synthetic_plate, viscy):
    import shutil

    plate_path = tmp_path / "plate.zarr"
    shutil.copytree(synthetic_plate.store_path, plate_path)
    config = tmp_path / "top.yml"
    config.write_text(
        yaml.safe_dump({"subcommand": "preprocess", "preprocess": {"data_path": str(plate_path), "block_size": 8}})
    )
    cli = viscy("-c", str(config))
    assert cli.subcommand == "preprocess"
    with open_ome_zarr(plate_path, layout="hcs", mode="r") as plate:
        assert sorted(read_norm_meta(plate)) == ["GFP", "Phase3D"]


def test_preprocess_accepts_a_single_channel_name(tmp_path, synthetic_plate, viscy):
    # regression: `--channel_names GFP` failed with "Expected a <class 'list'>"
    import shutil

    plate_path = tmp_path / "plate.zarr"
    shutil.copytree(synthetic_plate.store_path, plate_path)
    with open_ome_zarr(plate_path, layout="hcs", mode="r+") as plate:
        plate.zattrs.pop("normalization", None)
    viscy("preprocess", "--data_path", str(plate_path), "--channel_names", "GFP", "--block_size", "8")
    with open_ome_zarr(plate_path, layout="hcs", mode="r") as plate:
        assert list(read_norm_meta(plate)) == ["GFP"]


def test_precompute_accepts_single_channel_and_well_names(tmp_path, synthetic_plate, viscy):
    import dask.array as da

    output = tmp_path / "stack"
    viscy(
        "precompute",
        "--data_path",
        str(synthetic_plate.store_path),
        "--output_path",
        str(output),
        "--channel_names",
        "GFP",
        "--subtrahends",
        "[mean]",
        "--divisors",
        "[std]",
        "--include_wells",
        "A/1",
        "--exclude_fovs",
        "A/1/1",
    )
    stack = da.from_npy_stack(output)
    assert stack.shape[:3] == (1, 4, 1)  # one FOV, four time points, one channel


TYPO_CAUSE = "ValueError: Channel(s) ['GPF'] not found; the data has channels ['Phase3D', 'GFP']."


def _channel_typo_config(tmp_path: Path, plate_path: Path) -> Path:
    return _write(
        tmp_path / "fit.yml",
        f"""
        trainer:
          accelerator: cpu
          fast_dev_run: true
        model:
          class_path: viscy_utils.testing.TinyRegressor
        data:
          class_path: viscy_data.hcs.HCSDataModule
          init_args:
            data_path: {plate_path}
            source_channel: GPF
            target_channel: Phase3D
            z_window_size: 1
            num_workers: 0
        """,
    )


@pytest.mark.slow
def test_config_error_shows_the_cause_as_the_last_line(tmp_path, synthetic_plate, run_viscy):
    # regression: a misspelt channel printed a traceback and a union error ending in a Namespace dump
    config = _channel_typo_config(tmp_path, synthetic_plate.store_path)
    result = run_viscy("fit", "-c", str(config), cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "Namespace(" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == TYPO_CAUSE


def test_config_error_keeps_its_traceback_at_debug_level(tmp_path, synthetic_plate, monkeypatch):
    from viscy_utils.cli import ConfigError, main

    monkeypatch.setenv(LOG_LEVEL_ENV, "DEBUG")
    config = _channel_typo_config(tmp_path, synthetic_plate.store_path)
    with pytest.raises(ConfigError) as error_info:  # uncaught: Python prints the whole traceback
        main(["fit", "-c", str(config)])
    assert str(error_info.value) == TYPO_CAUSE
    assert error_info.value.cause.__traceback__ is not None


def test_input_error_while_running_shows_the_cause_as_the_last_line(synthetic_plate, monkeypatch, capsys, recwarn):
    from viscy_utils.cli import main

    monkeypatch.setenv(LOG_LEVEL_ENV, "WARNING")
    args = ["preprocess", "--data_path", str(synthetic_plate.store_path), "--channel_names", "[DAPI]"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)  # as a wrapper command (dynaclr) calls it, while sys.argv holds its own arguments
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("ValueError: Channels ['DAPI'] not found in ")
    assert not [w for w in recwarn if "args parameter" in str(w.message)]  # Lightning's warning about sys.argv


def test_unexpected_error_while_running_keeps_its_traceback(tmp_path, monkeypatch):
    from viscy_utils.cli import main

    monkeypatch.setenv(LOG_LEVEL_ENV, "WARNING")
    ckpt = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {"conv.weight": torch.zeros(1, 1, 1, 1, 1)}}, ckpt)
    args = ["export", "--model", "viscy_utils.testing.TinyRegressor", "--export_path", str(tmp_path / "m.onnx")]
    with pytest.raises(RuntimeError, match="Missing key"):  # not an input error that VisCy validates
        main([*args, "--ckpt_path", str(ckpt)])


@pytest.mark.slow
def test_top_level_help_is_static_and_does_not_import_torch(run_viscy):
    # regression: `viscy --help` imported Lightning, torch and MONAI first (about 20 s on 2 cores)
    script = textwrap.dedent(
        """
        import sys
        import viscy_utils
        print("TORCH_AFTER_IMPORT", "torch" in sys.modules)
        from viscy_utils.cli import main
        for args in (["--help"], ["-h"], []):
            try:
                main(args)
            except SystemExit as exit:
                assert exit.code in (0, None), exit.code
        print("TORCH_AFTER_HELP", "torch" in sys.modules)
        """
    )
    import subprocess

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "TORCH_AFTER_IMPORT False" in result.stdout
    assert "TORCH_AFTER_HELP False" in result.stdout
    assert result.stdout.count("usage: viscy") == 3
    for subcommand in ("fit", "validate", "test", "predict", *VISCY_SUBCOMMANDS):
        assert f"\n  {subcommand} " in result.stdout
    result = run_viscy("--help")
    assert result.returncode == 0, result.stderr
    assert "convert_to_anndata" in result.stdout


def test_static_help_lists_the_subcommands_of_the_lightning_cli():
    from viscy_utils.cli import SUBCOMMAND_HELP, VisCyCLI

    assert list(SUBCOMMAND_HELP) == list(VisCyCLI.subcommands())


def _viscy_in_a_fresh_process(*args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``viscy ARGS`` in a fresh interpreter; return the process and which of torch and MONAI it imported."""
    return run_in_fresh_interpreter("viscy", "viscy_utils.cli", *args)


@pytest.mark.parametrize("subcommand", list(SUBCOMMAND_HELP))
def test_subcommand_help_is_static_and_imports_neither_torch_nor_monai(subcommand):
    result, heavy = _viscy_in_a_fresh_process(subcommand, "--help")
    assert result.returncode == 0, result.stderr
    assert heavy == []
    assert result.stdout.startswith(f"usage: viscy {subcommand} ")
    assert SUBCOMMAND_HELP[subcommand] in result.stdout
    for option in ("-c, --config", "--print_config", "--seed_everything", "--trainer.KEY VALUE", "--help-all"):
        assert option in result.stdout
    for argument in SUBCOMMAND_ARGUMENTS[subcommand]:
        assert f"--{argument.name} {argument.metavar}" in result.stdout
    assert ("--model CLASS_PATH" in result.stdout) == (subcommand in ("fit", "validate", "test", "predict", "export"))
    assert ("--data CLASS_PATH" in result.stdout) == (subcommand in ("fit", "validate", "test", "predict"))
    assert f"`viscy {subcommand} --help-all`" in result.stdout


def test_help_after_a_config_is_the_static_help(tmp_path):
    config = tmp_path / "fit.yml"
    config.write_text(yaml.safe_dump(_tiny_fit_settings(tmp_path)))
    for args in (["fit", "-c", str(config), "--help"], ["-c", str(config), "fit", "-h"]):
        result, heavy = _viscy_in_a_fresh_process(*args)
        assert result.returncode == 0, result.stderr
        assert heavy == []
        assert result.stdout.startswith("usage: viscy fit ")


@pytest.mark.parametrize("subcommand", list(SUBCOMMAND_HELP))
def test_static_arguments_are_those_of_the_trainer_method(subcommand):
    # the static help cannot drift from the signatures that the Lightning CLI turns into options
    from viscy_utils.cli import VisCyCLI
    from viscy_utils.trainer import VisCyTrainer

    filled_in_by_the_cli = VisCyCLI.subcommands()[subcommand]
    parameters = [
        parameter
        for name, parameter in inspect.signature(getattr(VisCyTrainer, subcommand)).parameters.items()
        if name != "self" and name not in filled_in_by_the_cli
    ]
    assert [(argument.name, argument.default) for argument in SUBCOMMAND_ARGUMENTS[subcommand]] == [
        (parameter.name, parameter.default) for parameter in parameters
    ]


@pytest.mark.parametrize("subcommand", list(SUBCOMMAND_HELP))
def test_static_help_names_only_options_of_the_lightning_cli(viscy, capsys, subcommand):
    static = subcommand_help(subcommand)
    with pytest.raises(SystemExit) as exit_info:
        viscy(subcommand, "--help")
    assert exit_info.value.code == 0
    lightning = capsys.readouterr().out
    options = re.findall(r"^  (-[-\w.]+)", static, flags=re.MULTILINE)
    assert "--ckpt_path" in options or subcommand not in ("fit", "validate", "test", "predict")
    for option in options:
        if option != HELP_ALL_OPTION:
            assert option.removesuffix("KEY") in lightning, option
    assert "default: 42" in lightning  # the seed_everything default that the static help states


def test_help_all_hands_help_to_the_lightning_cli(monkeypatch):
    from viscy_utils import cli_help

    calls = []
    monkeypatch.setattr(cli_help, "run_cli", calls.append)
    assert cli_help.show_help_if_asked(["fit", "-c", "fit.yml", "--help-all"])
    assert calls == [["fit", "-c", "fit.yml", "--help"]]
    assert not cli_help.show_help_if_asked(["fit", "-c", "fit.yml"])
    assert cli_help.static_help(["fitt", "--help"]) is None  # Lightning names the valid subcommands


@pytest.mark.slow
def test_fit_does_not_print_third_party_tips(tmp_path, run_viscy, monkeypatch):
    # regression: litlogger/litmodels tips and torch's LeafSpec deprecation, which users cannot act on
    monkeypatch.setenv(LOG_LEVEL_ENV, "INFO")
    config = tmp_path / "fit.yml"
    config.write_text(yaml.safe_dump(_tiny_fit_settings(tmp_path)))
    result = run_viscy("fit", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "fast_dev_run" in result.stderr  # Lightning's own messages still show at INFO
    for noise in ("litlogger", "litmodels", "LeafSpec"):
        assert noise not in result.stderr


def test_predict_without_a_logger_leaves_the_users_config_yaml_alone(tmp_path, monkeypatch, viscy):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("mine: true\n")
    config = tmp_path / "predict.yml"
    config.write_text(
        textwrap.dedent(
            f"""
            trainer:
              accelerator: cpu
              logger: false
              callbacks:
                - class_path: viscy_utils.callbacks.EmbeddingWriter
                  init_args:
                    output_path: {tmp_path / "emb.zarr"}
            model:
              class_path: viscy_utils.testing.TinyEmbedder
            data:
              class_path: viscy_utils.testing.IndexedCellsDataModule
            """
        )
    )
    viscy("predict", "-c", str(config))
    assert (tmp_path / "emb.zarr").is_dir()
    assert (tmp_path / "config.yaml").read_text() == "mine: true\n"
