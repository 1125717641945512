"""DynaCLR: self-supervised contrastive learning of cell-state dynamics.

The LightningModules are importable from the package root or from their modules (the paths
that configs name, e.g. ``class_path: dynaclr.engine.ContrastiveModule``). The root imports
them lazily, so ``import dynaclr`` (and ``dynaclr --help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "ContrastiveModule": "dynaclr.engine",
    "ContrastivePrediction": "dynaclr.engine",
    "BetaVaeModule": "dynaclr.vae",
    "JointEncoders": "dynaclr.multi_modal",
    "JointContrastiveModule": "dynaclr.multi_modal",
    "MultiModalContrastiveModule": "dynaclr.multi_modal",
    "ClassificationModule": "dynaclr.classification",
    "ClassificationPredictionWriter": "dynaclr.classification",
    "NTXentHCL": "dynaclr.loss",
    "TemperatureSchedule": "dynaclr.temperature",
    "sample_tau": "dynaclr.tau_sampling",
    "ExperimentConfig": "dynaclr.experiment",
    "ExperimentRegistry": "dynaclr.experiment",
    "MultiExperimentIndex": "dynaclr.index",
    "MultiExperimentTripletDataset": "dynaclr.dataset",
    "MultiExperimentDataModule": "dynaclr.datamodule",
}
"""Public name -> module that defines it."""

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dynaclr' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
