"""The Lightning CLI configs the demo writes and runs: ``fit.yml`` and one predict config per embedding."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from dynaclr.demo.settings import HELD_OUT_EXPERIMENT, DemoSettings

__all__ = ["EMBEDDING_WRITER", "fit_config", "linear_classifier_config", "predict_config"]

EMBEDDING_WRITER = "viscy_utils.callbacks.embedding_writer.EmbeddingWriter"
"""Class path of the callback that writes each predict run's AnnData store."""

_CHANNELS = ["ch_0", "ch_1"]
"""Model channels: label-free (Phase3D) and the reporter (GFP or RFP, by position)."""

_Z_SLICES = 5


def fit_config(settings: DemoSettings, experiments_yaml: Path, run_dir: Path, seed: int) -> dict[str, Any]:
    """Return the demo's ``dynaclr fit`` config: ContrastiveModule, MultiExperimentDataModule and NTXentHCL.

    Every sampling axis of :class:`~dynaclr.datamodule.MultiExperimentDataModule` is on (experiment-aware
    batches with a 10% leak, condition balance, temporal enrichment) and
    :class:`~viscy_data.channel_dropout.ChannelDropout` drops the reporter channel. The held-out
    experiment (:data:`~dynaclr.demo.settings.HELD_OUT_EXPERIMENT`) only validates.

    Parameters
    ----------
    settings : DemoSettings
        Encoder and training sizes.
    experiments_yaml : Path
        The study's ``experiments.yml``.
    run_dir : Path
        Where logs and checkpoints go: ``<run_dir>/version_<n>/checkpoints/last.ckpt``, a new version
        for each run; ``last.ckpt`` is also written when training is interrupted, and
        ``--ckpt_path last`` continues the newest version that has one.
    seed : int
        Seed of the weights' initialisation, the sampler, the positives and the augmentations.

    Returns
    -------
    dict
        The config, ready for ``yaml.safe_dump``.
    """
    read_size = settings.patch_size * 3 // 2
    return {
        "seed_everything": seed,
        "trainer": {
            "accelerator": "auto",
            "devices": 1,
            "precision": "32-true",
            "max_epochs": settings.max_epochs,
            "limit_train_batches": settings.train_batches,
            "limit_val_batches": settings.val_batches,
            "log_every_n_steps": 5,
            "enable_model_summary": False,
            "default_root_dir": str(run_dir),
            # FlexibleBatchSampler shards batches over DDP ranks itself
            "use_distributed_sampler": False,
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(run_dir.parent), "name": run_dir.name},
            },
            "callbacks": [
                {
                    "class_path": "viscy_utils.callbacks.ResumableCheckpoint",
                    "init_args": {"save_top_k": 0},
                },
                {  # representation quality of held-out cells after each epoch, logged as online_eval/*
                    "class_path": "viscy_utils.callbacks.OnlineEvaluation",
                    "init_args": {
                        "max_cells": 1024,
                        "max_epoch_fraction": 0.035,
                        "label_columns": ["infection_state"],
                        "annotations_csv": str(experiments_yaml.parent / HELD_OUT_EXPERIMENT / "annotations.csv"),
                    },
                },
            ],
        },
        "model": {
            "class_path": "dynaclr.engine.ContrastiveModule",
            "init_args": {
                "encoder": {
                    "class_path": "viscy_models.contrastive.ContrastiveEncoder",
                    "init_args": {
                        "backbone": settings.backbone,
                        "in_channels": len(_CHANNELS),
                        "in_stack_depth": _Z_SLICES,
                        "stem_kernel_size": [_Z_SLICES, settings.stem_stride, settings.stem_stride],
                        "stem_stride": [_Z_SLICES, settings.stem_stride, settings.stem_stride],
                        "embedding_dim": 256,
                        "projection_dim": 32,
                    },
                },
                "loss_function": {
                    "class_path": "dynaclr.loss.NTXentHCL",
                    "init_args": {"temperature": settings.temperature, "beta": 0.5},
                },
                "lr": settings.lr,
                "schedule": "WarmupCosine",
                "warmup_epochs": 1,
                "log_batches_per_epoch": 0,
                "example_input_array_shape": [1, len(_CHANNELS), _Z_SLICES, settings.patch_size, settings.patch_size],
            },
        },
        "data": {
            "class_path": "dynaclr.datamodule.MultiExperimentDataModule",
            "init_args": {
                "experiments_yaml": str(experiments_yaml),
                "z_range": [0, _Z_SLICES],
                "yx_patch_size": [read_size, read_size],
                "final_yx_patch_size": [settings.patch_size, settings.patch_size],
                # cells whose patch centre is clamped far from them (patches mostly of image border) hurt
                # a small encoder: keep only those within a quarter of the read patch of the border
                "max_border_shift": read_size // 4,
                "val_experiments": [HELD_OUT_EXPERIMENT],
                "tau_range": [0.5, 2.0],
                "tau_decay_rate": 2.0,
                "batch_size": settings.batch_size,
                "num_workers": 1,
                "experiment_aware": True,
                "condition_balanced": True,
                "leaky": 0.1,
                "temporal_enrichment": True,
                "temporal_window_hours": 2.0,
                "temporal_global_fraction": 0.3,
                "channel_dropout_channels": [1],
                "channel_dropout_prob": 0.3,
                "normalizations": [
                    {
                        "class_path": "viscy_transforms.NormalizeSampled",
                        "init_args": {
                            "keys": _CHANNELS,
                            "level": "dataset_statistics",
                            "subtrahend": "mean",
                            "divisor": "std",
                        },
                    }
                ],
                "augmentations": [
                    {
                        "class_path": "viscy_transforms.BatchedRandAffined",
                        "init_args": {
                            "keys": _CHANNELS,
                            "prob": 0.8,
                            "rotate_range": [3.14, 0.0, 0.0],
                            "scale_range": [[1.0, 1.0], [0.9, 1.1], [0.9, 1.1]],
                        },
                    },
                    # the synthetic cells sit at one of three focal planes for life: shifting each view by up to a
                    # slice keeps the encoder from matching a cell to itself by its focus
                    {
                        "class_path": "viscy_transforms.BatchedRandZStackShiftd",
                        "init_args": {"keys": _CHANNELS, "max_shift": 1, "prob": 0.8, "mode": "edge"},
                    },
                    # one factor per channel, as in the example configs: a factor shared by both channels keeps
                    # their ratio, the expression level a cell inherits, which identifies its lineage
                    *(
                        {
                            "class_path": "viscy_transforms.BatchedRandScaleIntensityd",
                            "init_args": {"keys": [channel], "prob": 0.8, "factors": 0.5},
                        }
                        for channel in _CHANNELS
                    ),
                    {
                        "class_path": "viscy_transforms.BatchedRandGaussianNoised",
                        "init_args": {"keys": _CHANNELS, "prob": 0.5, "mean": 0.0, "std": 0.1},
                    },
                ],
                "seed": seed,
            },
        },
    }


def predict_config(
    fit: dict[str, Any], model: dict[str, Any], output_path: Path, ckpt_path: Path | None = None
) -> dict[str, Any]:
    """Return a ``dynaclr predict`` config that embeds every cell of the held-out experiment.

    The data are those of ``fit`` without augmentations, restricted to
    :data:`~dynaclr.demo.settings.HELD_OUT_EXPERIMENT`; the seed is that of ``fit``, so a model
    without ``ckpt_path`` starts from the same weights as the trained one did.

    Parameters
    ----------
    fit : dict
        The config of :func:`fit_config`.
    model : dict
        ``class_path``/``init_args`` of the model that embeds the cells.
    output_path : Path
        AnnData zarr store that the :class:`~viscy_utils.callbacks.EmbeddingWriter` writes.
    ckpt_path : Path, optional
        Checkpoint whose weights the model loads (its ``init_args.ckpt_path``); None predicts with the
        model as initialised.

    Returns
    -------
    dict
        The config, ready for ``yaml.safe_dump``.
    """
    data = copy.deepcopy(fit["data"])
    data["init_args"].pop("augmentations")
    data["init_args"]["predict_experiments"] = [HELD_OUT_EXPERIMENT]
    config: dict[str, Any] = {
        "seed_everything": fit["seed_everything"],
        "trainer": {
            "accelerator": "auto",
            "devices": 1,
            "precision": "32-true",
            "logger": False,
            "enable_model_summary": False,
            # a config of the demo's own outputs: running it again rewrites the same embeddings
            "callbacks": [
                {"class_path": EMBEDDING_WRITER, "init_args": {"output_path": str(output_path), "overwrite": True}}
            ],
        },
        "model": copy.deepcopy(model),
        "data": data,
        "return_predictions": False,
    }
    if ckpt_path is not None:
        # the module loads the weights itself: Lightning's ckpt_path would also restore, and warn about, the
        # training's callbacks
        config["model"].setdefault("init_args", {})["ckpt_path"] = str(ckpt_path)
    return config


def linear_classifier_config(embeddings: Path, annotations: Path, output_dir: Path) -> dict[str, Any]:
    """Return a ``dynaclr train-linear-classifier`` config for the infection state of the demo's embeddings.

    The demo scores its embeddings with the same classifier in-process; this config lets the
    evaluation command train and save it (under ``output_dir``) from the command line.

    Parameters
    ----------
    embeddings : Path
        AnnData store of the trained encoder's embeddings.
    annotations : Path
        Annotations CSV of those cells.
    output_dir : Path
        Where the command saves the trained pipeline.

    Returns
    -------
    dict
        The config (:class:`~viscy_utils.evaluation.linear_classifier_config.LinearClassifierTrainConfig` fields).
    """
    return {
        "task": "infection_state",
        "input_channel": "sensor",
        "embedding_model": "DynaCLR demo",
        "train_datasets": [{"embeddings": str(embeddings), "annotations": str(annotations)}],
        "use_scaling": True,
        "class_weight": "balanced",
        "split_train_data": 0.8,
        "output_dir": str(output_dir),
    }
