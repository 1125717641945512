"""Sizes of the demo: the synthetic study, the encoder and the training budget, for a full and a quick run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DEFAULT", "GPU", "HELD_OUT_EXPERIMENT", "QUICK", "DemoSettings", "demo_settings"]

HELD_OUT_EXPERIMENT = "2025_08_15_TOMM20"
"""The experiment the demo never trains on: validation during training, then evaluation.

Its reporter is RFP where the training experiments have GFP, and its frames are 15 minutes apart
where theirs are 30 and 20 (see :mod:`dynaclr.example_experiments`).
"""


@dataclass(frozen=True)
class DemoSettings:
    """What the demo writes and how long it trains.

    Attributes
    ----------
    name : str
        ``"default"``, ``"gpu"`` or ``"quick"``.
    cells_per_fov : int
        Cells in the first frame of each synthetic field of view.
    backbone : str
        timm ConvNeXt of :class:`viscy_models.contrastive.ContrastiveEncoder`.
    patch_size : int
        Side of the encoder's YX input; patches are read 1.5 times larger for the augmentations. The
        synthetic cells are 11 pixels across: 16 pixels show the cell and little of its neighbours.
    stem_stride : int
        YX kernel and stride of the encoder's stem: 2 keeps a token per 2x2 pixels, so that the 5-pixel
        nucleus that the infection fills spans several tokens.
    batch_size : int
        Anchors per batch.
    max_epochs : int
        Training epochs.
    train_batches : int
        At most this many training batches per epoch (``limit_train_batches``); the sampler's epoch
        may be shorter, and the report states the number trained.
    val_batches : int
        Validation batches per epoch (contrastive loss on the held-out experiment).
    lr : float
        Peak AdamW learning rate (linear warm-up over the first epoch, then cosine decay).
    temperature : float
        Temperature of :class:`dynaclr.loss.NTXentHCL`.
    probe_splits : int
        Random 80/20 track splits the infection classifier is averaged over.
    """

    name: str
    cells_per_fov: int = 10
    backbone: str = "convnextv2_atto"
    patch_size: int = 16
    stem_stride: int = 2
    batch_size: int = 32
    max_epochs: int = 16
    train_batches: int = 40
    val_batches: int = 4
    lr: float = 5e-4
    temperature: float = 0.2
    probe_splits: int = 5

    def as_dict(self) -> dict[str, Any]:
        """Return the sizes as a plain dict, without the name (for the report)."""
        sizes = asdict(self)
        del sizes["name"]
        return sizes


DEFAULT = DemoSettings(name="default")
"""``dynaclr demo``: about 3 minutes on 2 CPU cores."""

QUICK = DemoSettings(name="quick", cells_per_fov=6, max_epochs=2, train_batches=15, val_batches=2)
"""``dynaclr demo --quick``: under a minute on 2 CPU cores, to check that everything works."""

GPU = DemoSettings(name="gpu", cells_per_fov=20, batch_size=64, max_epochs=30, train_batches=60, val_batches=8)
"""``dynaclr demo`` with a CUDA device: twice the cells, batches twice as large and about twice the training
steps of :data:`DEFAULT` (30 epochs of the sampler's 36 batches; the same run takes about 16 minutes on 2 CPU
cores)."""


def demo_settings(quick: bool) -> DemoSettings:
    """Return the settings ``dynaclr demo`` runs with: :data:`QUICK`, else :data:`GPU` with CUDA, else :data:`DEFAULT`.

    Parameters
    ----------
    quick : bool
        The ``--quick`` flag, which wins on any machine.

    Returns
    -------
    DemoSettings
        The settings.
    """
    import torch

    if quick:
        return QUICK
    return GPU if torch.cuda.is_available() else DEFAULT
