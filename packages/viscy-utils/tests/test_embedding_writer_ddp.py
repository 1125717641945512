import anndata as ad
import numpy as np
import pytest
from lightning.pytorch import Trainer

from viscy_utils.callbacks import EmbeddingWriter


@pytest.mark.slow
def test_two_process_prediction_writes_every_cell_once(tmp_path):
    from viscy_utils.testing import IndexedCellsDataModule, TinyEmbedder

    output = tmp_path / "emb.zarr"
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        logger=False,
        enable_progress_bar=False,
        callbacks=[EmbeddingWriter(output)],
    )
    model = TinyEmbedder(in_channels=1)
    trainer.predict(model, datamodule=IndexedCellsDataModule(length=7, batch_size=2))
    adata = ad.read_zarr(output)
    # 7 cells over 2 ranks: the sampler pads one duplicate, which is dropped
    assert sorted(adata.obs["id"].tolist()) == list(range(7))
    assert adata.obs_names.is_unique
    order = np.argsort(adata.obs["id"].to_numpy())
    features = adata.X[order]
    # constant patches of value id: each row is the encoder applied to a constant input
    assert np.unique(features.round(5), axis=0).shape[0] == 7
