"""OnlineEvaluation through a real ``dynaclr fit`` of the synthetic multi-experiment config, and its cell loader."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dynaclr.datamodule import MultiExperimentDataModule

from .conftest import CONFIGS

README = Path(__file__).resolve().parents[1] / "README.md"

MULTI_FIT = [str(CONFIGS / "multi_experiment_fit.yml"), str(CONFIGS / "multi_experiment_fit_synthetic_cpu.yml")]
COMMITTED_EXPERIMENTS = f"--data.init_args.experiments_yaml={CONFIGS / 'experiments.yml'}"
CALLBACK = "viscy_utils.callbacks.OnlineEvaluation"
VAL_ANNOTATIONS = "synthetic/experiments/2025_08_15_TOMM20/annotations.csv"


def _documented_names() -> set[str]:
    """The ``online_eval/...`` names of the README's "Watching representation quality" section."""
    text = README.read_text()
    section = text.split("## Watching representation quality", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`(online_eval/[\w/<>]+)`", section))


@pytest.mark.slow
def test_dynaclr_fit_logs_the_documented_names(experiments_workdir, dynaclr):
    config = yaml.safe_load((CONFIGS / "multi_experiment_fit.yml").read_text())
    callbacks = config["trainer"]["callbacks"]
    (entry,) = [callback for callback in callbacks if callback["class_path"] == CALLBACK]
    entry["init_args"]["annotations_csv"] = VAL_ANNOTATIONS  # the committed entry, with the val experiment's labels
    override = experiments_workdir / "online_evaluation.yml"
    override.write_text(
        yaml.safe_dump(
            {
                "trainer": {
                    "max_epochs": 1,
                    "callbacks": callbacks,
                    "logger": {
                        "class_path": "lightning.pytorch.loggers.CSVLogger",
                        "init_args": {"save_dir": "logs", "name": "run", "version": "v"},
                    },
                }
            }
        )
    )
    dynaclr("fit", *(f"-c={path}" for path in MULTI_FIT), f"-c={override}", COMMITTED_EXPERIMENTS)
    metrics = pd.read_csv(experiments_workdir / "logs" / "run" / "v" / "metrics.csv")
    logged = {column for column in metrics.columns if column.startswith("online_eval/")}
    labels = ["condition", "infection_state", "cell_division_state"]
    expected = set()
    for name in _documented_names():
        expected |= {name.replace("<label>", label) for label in labels} if "<label>" in name else {name}
    assert logged == expected
    row = metrics.dropna(subset=sorted(logged)).iloc[-1]
    assert row["epoch"] == 0
    assert pd.notna(row["loss/val"])
    # 0.03 of an epoch's compute: 0.03 * 6 passes * 10 batches * 16 anchors = 28.8
    assert row["online_eval/cells"] == 28
    assert 1 < row["online_eval/effective_rank/projections"] <= 32
    assert 1 < row["online_eval/effective_rank/features"]
    assert 0 <= row["online_eval/alignment"] <= 4
    assert -8 <= row["online_eval/uniformity"] < 0
    for label in labels:
        assert 0 <= row[f"online_eval/knn_accuracy/{label}"] <= 1
        assert 0 <= row[f"online_eval/linear_probe/{label}"] <= 1


def test_the_committed_configs_run_it_where_the_data_module_provides_the_cells():
    for name, runs_it in (("multi_experiment_fit.yml", True), ("fit.yml", False)):
        config = yaml.safe_load((CONFIGS / name).read_text())
        class_paths = [callback["class_path"] for callback in config["trainer"]["callbacks"]]
        assert (CALLBACK in class_paths) is runs_it, name


def test_online_evaluation_dataloader_gives_fixed_validation_cells_split_over_ranks(experiments_workdir):
    datamodule = MultiExperimentDataModule(
        experiments_yaml=str(CONFIGS / "experiments.yml"),
        z_range=(0, 5),
        yx_patch_size=(48, 48),
        final_yx_patch_size=(32, 32),
        val_experiments=["2025_08_15_TOMM20"],
        batch_size=16,
    )
    datamodule.setup("fit")

    def cells(loader) -> pd.DataFrame:
        batches = list(loader)
        assert all(set(batch) == {"anchor", "anchor_norm_meta", "index"} for batch in batches)
        # no augmentations: only the final 32x32 patch is read (viscy_data.after_transfer.smallest_read_yx)
        assert all(batch["anchor"].shape[1:] == (2, 5, 32, 32) for batch in batches)
        return pd.DataFrame([row for batch in batches for row in batch["index"]])

    first = cells(datamodule.online_evaluation_dataloader(max_cells=100, seed=0))
    assert len(first) == 100
    assert set(first["experiment"]) == {"2025_08_15_TOMM20"}
    assert first["track_id"].nunique() > 20  # spread over tracks
    assert cells(datamodule.online_evaluation_dataloader(max_cells=100, seed=0)).equals(first)
    # two ranks split the same cells without overlap
    shards = []
    for rank in range(2):
        datamodule._rank = lambda rank=rank: (2, rank)
        shards.append(cells(datamodule.online_evaluation_dataloader(max_cells=100, seed=0)))
    keys = ["fov_name", "track_id", "t"]
    both = pd.concat(shards).sort_values(keys).reset_index(drop=True)
    assert both[keys].equals(first.sort_values(keys).reset_index(drop=True)[keys])
    assert not both.duplicated(keys).any()
    assert np.all(first.groupby(["fov_name", "track_id"])["t"].agg(lambda t: t.max() - t.min() + 1 == len(t)))
