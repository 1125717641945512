"""Synthetic plates shared by the viscy-data tests.

Session-scoped plates are read-only: tests that need to change a plate write their own
with ``plate_factory``.
"""

import pytest
import torch

from viscy_data.normalization import NORMALIZATION_FIELD
from viscy_data.ome_compat import SUPPORTED_OME_VERSIONS, open_ome_zarr
from viscy_data.synthetic import write_synthetic_plate

OME_VERSIONS = ("0.4", "0.5")


def _skip_unsupported(version):
    if version not in SUPPORTED_OME_VERSIONS:
        pytest.skip(f"iohub here cannot write OME-Zarr {version} (supported: {SUPPORTED_OME_VERSIONS})")


@pytest.fixture(scope="session")
def synthetic_plate(tmp_path_factory):
    """Default test plate: 4 wells x 2 FOVs, 4 frames, Phase3D + GFP, (5, 64, 64), OME-Zarr 0.4."""
    return write_synthetic_plate(tmp_path_factory.mktemp("synthetic") / "plate.zarr", seed=0)


@pytest.fixture(scope="session", params=OME_VERSIONS)
def versioned_plate(request, tmp_path_factory):
    """The default plate written as OME-Zarr 0.4 (zarr 2) and 0.5 (zarr 3, where iohub supports it)."""
    _skip_unsupported(request.param)
    root = tmp_path_factory.mktemp(f"ome-{request.param}")
    return write_synthetic_plate(root / "plate.zarr", version=request.param, seed=0)


@pytest.fixture(scope="session")
def tracking_plate(tmp_path_factory):
    """Larger images and more frames for triplet sampling: 2 wells x 2 FOVs, 6 frames, (7, 96, 96)."""
    return write_synthetic_plate(
        tmp_path_factory.mktemp("tracking") / "plate.zarr",
        well_conditions={"A/1": "uninfected", "B/1": "infected"},
        n_frames=6,
        z_slices=7,
        yx_size=(96, 96),
        cells_per_fov=6,
        division_probability=0.15,
        seed=3,
    )


@pytest.fixture
def plate_factory(tmp_path):
    """Write a plate with custom arguments under a fresh directory of this test's tmp_path."""
    counter = iter(range(1_000_000))

    def make(**kwargs):
        root = tmp_path / f"plate{next(counter)}"
        root.mkdir()
        version = kwargs.get("version", "0.4")
        _skip_unsupported(version)
        return write_synthetic_plate(root / "plate.zarr", **kwargs)

    return make


class ZScoreFromMeta:
    """Test transform: z-score channels with ``norm_meta[channel][level]`` (scalar or per-sample stats)."""

    def __init__(self, keys, level="fov_statistics"):
        self.keys = list(keys)
        self.level = level

    def __call__(self, sample):
        sample = dict(sample)
        for key in self.keys:
            stats = sample["norm_meta"][key][self.level]
            image = sample[key]
            mean, std = (torch.as_tensor(stats[name], dtype=image.dtype) for name in ("mean", "std"))
            if mean.ndim == 1:  # (B,) statistics of a batch
                shape = (-1,) + (1,) * (image.ndim - 1)
                mean, std = mean.reshape(shape), std.reshape(shape)
            sample[key] = (image - mean) / std
        return sample


@pytest.fixture(scope="session")
def zscore():
    """The ZScoreFromMeta test transform class."""
    return ZScoreFromMeta


def remove_normalization(store_path):
    """Delete the normalization metadata of a plate and all its positions."""
    with open_ome_zarr(store_path, layout="hcs", mode="r+") as plate:
        del plate.zattrs[NORMALIZATION_FIELD]
        for _, position in plate.positions():
            del position.zattrs[NORMALIZATION_FIELD]


@pytest.fixture(scope="session")
def plate_without_norm(tmp_path_factory):
    """A small plate whose normalization metadata was removed."""
    plate = write_synthetic_plate(tmp_path_factory.mktemp("no-norm") / "plate.zarr", n_frames=3, seed=5)
    remove_normalization(plate.store_path)
    return plate


@pytest.fixture(scope="session")
def stage_trainer():
    """Make a real, idle CPU ``Trainer`` set to one stage, for calling a data module's hooks by hand.

    Stages: "train", "validate" (a validation inside fit) and "predict". The trainer's loops sit at
    batch 0 of epoch 0, which is what the data modules' seeding reads.
    """
    from lightning.pytorch import Trainer
    from lightning.pytorch.trainer.states import RunningStage, TrainerFn

    states = {
        "train": (TrainerFn.FITTING, RunningStage.TRAINING),
        "validate": (TrainerFn.FITTING, RunningStage.VALIDATING),
        "predict": (TrainerFn.PREDICTING, RunningStage.PREDICTING),
    }

    def make(stage):
        trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
        trainer.state.fn, trainer.state.stage = states[stage]
        return trainer

    return make
