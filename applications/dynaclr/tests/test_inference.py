"""INFER-01..03: the committed checkpoint loads, ``dynaclr predict`` writes its embeddings, and they are reproducible.

``fixtures/reference.ckpt`` and ``fixtures/reference_embeddings.npz`` were written by
``fixtures/make_reference_checkpoint.py`` (a ContrastiveModule trained on the example plate).
Embeddings are compared with a tolerance of 1e-5 relative / 1e-6 absolute, not bit for bit:
convolutions on the CPU go through oneDNN, whose kernels (and so the order of floating-point
sums) depend on the CPU's instruction set, so another machine may differ in the last bits.
Two predictions on the same machine must be identical.
"""

from __future__ import annotations

import shutil

import anndata as ad
import numpy as np
import pytest
import torch
import yaml

from dynaclr.engine import ContrastiveModule
from viscy_models.contrastive import ContrastiveEncoder

from .conftest import FIXTURES

CHECKPOINT = FIXTURES / "reference.ckpt"
PREDICT_CONFIG = FIXTURES / "reference_predict.yml"
INDEX_COLUMNS = ("fov_name", "track_id", "t", "id")


def _encoder_arguments() -> dict:
    config = yaml.safe_load(PREDICT_CONFIG.read_text())
    return config["model"]["init_args"]["encoder"]["init_args"]


def test_committed_checkpoint_is_small_and_loads_strictly():
    assert CHECKPOINT.stat().st_size < 3_000_000
    module = ContrastiveModule(ContrastiveEncoder(**_encoder_arguments()), ckpt_path=str(CHECKPOINT))
    state_dict = torch.load(CHECKPOINT, weights_only=True)["state_dict"]
    assert set(module.state_dict()) == set(state_dict)
    for key, value in state_dict.items():
        assert torch.equal(module.state_dict()[key], value), key


@pytest.fixture(scope="module")
def predicted_twice(example_plate_dir, tmp_path_factory):
    """Predict with the committed checkpoint twice, each in a fresh working directory."""
    from dynaclr.cli import main

    stores = []
    for run in range(2):
        workdir = tmp_path_factory.mktemp(f"predict{run}")
        (workdir / "synthetic").symlink_to(example_plate_dir / "synthetic", target_is_directory=True)
        shutil.copy(CHECKPOINT, workdir / "reference.ckpt")
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(workdir)
            with pytest.raises(SystemExit) as exit_:
                main(["predict", "-c", str(PREDICT_CONFIG)])
        assert exit_.value.code in (0, None)
        stores.append(ad.read_zarr(workdir / "embeddings.zarr"))
    return stores


def test_predict_writes_the_reference_embeddings(predicted_twice, example_plate_dir):
    adata = predicted_twice[0]
    reference = np.load(FIXTURES / "reference_embeddings.npz", allow_pickle=False)
    assert adata.X.shape == reference["features"].shape
    assert adata.obsm["X_projections"].shape == reference["projections"].shape
    for column in INDEX_COLUMNS:
        np.testing.assert_array_equal(adata.obs[column].to_numpy().astype(reference[column].dtype), reference[column])
    np.testing.assert_allclose(adata.X, reference["features"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adata.obsm["X_projections"], reference["projections"], rtol=1e-5, atol=1e-6)
    tracks = (example_plate_dir / "synthetic" / "tracks").rglob("*.csv")
    assert adata.n_obs <= sum(len(path.read_text().splitlines()) - 1 for path in tracks)


def test_predicting_twice_gives_identical_embeddings(predicted_twice):
    first, second = predicted_twice
    np.testing.assert_array_equal(first.X, second.X)
    np.testing.assert_array_equal(first.obsm["X_projections"], second.obsm["X_projections"])
    assert first.obs.equals(second.obs)
    assert list(first.obs_names) == list(second.obs_names)
