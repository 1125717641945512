from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from viscy_utils.callbacks import EmbeddingWriter
from viscy_utils.callbacks.embedding_writer import (
    get_available_index_columns,
    index_to_dataframe,
    read_embedding_dataset,
    write_embedding_dataset,
)


def _batch(start: int, size: int, as_records: bool) -> dict:
    rows = [
        {
            "fov_name": "/A/1/0",
            "track_id": i // 3,
            "t": i % 3,
            "id": i,
            "parent_track_id": -1,
            "parent_id": -1,
            "y": 10,
            "x": 20,
        }
        for i in range(start, start + size)
    ]
    index = (
        rows
        if as_records
        else {k: torch.tensor([r[k] for r in rows]) if k != "fov_name" else [r[k] for r in rows] for k in rows[0]}
    )
    generator = torch.Generator().manual_seed(start)
    return {
        "features": torch.randn(size, 6, generator=generator),
        "projections": torch.randn(size, 3, generator=generator),
        "index": index,
    }


def _trainer(datamodule=None) -> SimpleNamespace:
    return SimpleNamespace(world_size=1, is_global_zero=True, datamodule=datamodule)


def test_writer_round_trip_with_unique_obs_names(tmp_path):
    path = tmp_path / "emb.zarr"
    writer = EmbeddingWriter(path)
    predictions = [_batch(0, 4, as_records=True), _batch(4, 4, as_records=False)]
    datamodule = SimpleNamespace(data_path="/data/plate.zarr", tracks_path="/data/tracks")
    writer.on_predict_start(_trainer(), None)
    writer.write_on_epoch_end(_trainer(datamodule), torch.nn.Linear(1, 1), predictions, [])
    adata = ad.read_zarr(path)
    expected_features = torch.cat([p["features"] for p in predictions]).numpy()
    np.testing.assert_allclose(adata.X, expected_features)
    np.testing.assert_allclose(adata.obsm["X_projections"], torch.cat([p["projections"] for p in predictions]).numpy())
    # regression: obs names were 0..B-1 repeated per batch
    assert adata.obs_names.is_unique
    assert list(adata.obs.columns) == ["fov_name", "track_id", "t", "id", "parent_track_id", "parent_id", "y", "x"]
    assert (adata.obs["fov_name"] == "A/1/0").all()
    assert adata.obs["id"].tolist() == list(range(8))
    assert adata.uns["data_path"] == "/data/plate.zarr"
    assert adata.uns["tracks_path"] == "/data/tracks"
    assert adata.uns["model"] == "torch.nn.modules.linear.Linear"


def test_writer_refuses_existing_output_unless_overwrite(tmp_path):
    path = tmp_path / "emb.zarr"
    path.mkdir()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        EmbeddingWriter(path).on_predict_start(_trainer(), None)
    # regression: overwrite=True was ignored by on_predict_start
    writer = EmbeddingWriter(path, overwrite=True)
    writer.on_predict_start(_trainer(), None)
    writer.write_on_epoch_end(_trainer(), torch.nn.Linear(1, 1), [_batch(0, 5, as_records=True)], [])
    assert ad.read_zarr(path).n_obs == 5


def test_writing_does_not_warn_about_the_zarr_format(tmp_path, recwarn):
    index = pd.DataFrame({"fov_name": ["A/1/0"] * 3, "id": [0, 1, 2]})
    write_embedding_dataset(tmp_path / "emb.zarr", np.zeros((3, 2)), index)
    assert [str(warning.message) for warning in recwarn if "zarr" in str(warning.message)] == []


def test_write_embedding_dataset_refuses_existing_output(tmp_path):
    path = tmp_path / "emb.zarr"
    features = np.zeros((3, 2))
    index = pd.DataFrame({"fov_name": ["A/1/0"] * 3, "id": [0, 1, 2]})
    write_embedding_dataset(path, features, index)
    with pytest.raises(FileExistsError):
        write_embedding_dataset(path, features + 1, index)
    write_embedding_dataset(path, features + 1, index, overwrite=True)
    np.testing.assert_array_equal(ad.read_zarr(path).X, features + 1)


def test_write_embedding_dataset_checks_lengths(tmp_path):
    with pytest.raises(ValueError, match="index_df has 2 rows but features has 3"):
        write_embedding_dataset(tmp_path / "e.zarr", np.zeros((3, 2)), pd.DataFrame({"id": [0, 1]}))


def test_embedding_key_projections_puts_features_in_backbone(tmp_path):
    path = tmp_path / "emb.zarr"
    writer = EmbeddingWriter(path, embedding_key="projections")
    batch = _batch(0, 4, as_records=True)
    writer.write_on_epoch_end(_trainer(), torch.nn.Linear(1, 1), [batch], [])
    adata = ad.read_zarr(path)
    np.testing.assert_allclose(adata.X, batch["projections"].numpy())
    np.testing.assert_allclose(adata.obsm["X_backbone"], batch["features"].numpy())
    assert "X_projections" not in adata.obsm


def test_writer_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match="write_interval must be 'epoch'"):
        EmbeddingWriter(tmp_path / "e.zarr", write_interval="batch")
    with pytest.raises(ValueError, match="embedding_key"):
        EmbeddingWriter(tmp_path / "e.zarr", embedding_key="logits")


def test_pca_reduction_in_obsm(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(20, 5))
    index = pd.DataFrame({"fov_name": ["A/1/0"] * 20, "id": range(20)})
    write_embedding_dataset(tmp_path / "e.zarr", features, index, pca_kwargs={"n_components": 3})
    assert ad.read_zarr(tmp_path / "e.zarr").obsm["X_pca"].shape == (20, 3)


def test_index_to_dataframe_accepts_records_and_columns():
    records = [{"fov_name": "A/1/0", "t": torch.tensor(1)}, {"fov_name": "A/1/0", "t": torch.tensor(2)}]
    assert index_to_dataframe(records)["t"].tolist() == [1, 2]
    assert index_to_dataframe({"fov_name": ["a", "b"], "t": torch.tensor([3, 4])})["t"].tolist() == [3, 4]


@pytest.mark.slow
def test_umap_and_phate_on_few_samples(tmp_path):
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 1, (6, 4)), rng.normal(8, 1, (6, 4))])
    index = pd.DataFrame({"fov_name": ["A/1/0"] * 12, "id": range(12)})
    umap_kwargs = {"n_neighbors": 50}
    write_embedding_dataset(tmp_path / "e.zarr", features, index, umap_kwargs=umap_kwargs, phate_kwargs={"knn": 30})
    adata = ad.read_zarr(tmp_path / "e.zarr")
    assert umap_kwargs == {"n_neighbors": 50}  # regression: the caller's dict was mutated
    for key in ("X_umap", "X_phate"):
        reduced = adata.obsm[key]
        assert reduced.shape == (12, 2)
        assert np.isfinite(reduced).all()
        # the two well separated clusters stay apart
        first, second = reduced[:6].mean(0), reduced[6:].mean(0)
        spread = max(reduced[:6].std(0).max(), reduced[6:].std(0).max())
        assert np.linalg.norm(first - second) > spread


def test_read_legacy_xarray_embeddings(tmp_path, caplog):
    import xarray as xr

    n = 4
    dataset = xr.Dataset(
        {"features": (("sample", "feature"), np.arange(n * 3, dtype=float).reshape(n, 3))},
        coords={
            "fov_name": ("sample", ["/A/1/0"] * n),
            "track_id": ("sample", [0, 0, 1, 1]),
            "t": ("sample", [0, 1, 0, 1]),
            "id": ("sample", range(n)),
        },
    )
    dataset.to_zarr(tmp_path / "legacy.zarr")
    assert get_available_index_columns(dataset) == ["fov_name", "track_id", "t", "id"]
    assert "parent_track_id" in caplog.text
    loaded = read_embedding_dataset(tmp_path / "legacy.zarr")
    assert list(loaded.indexes["sample"].names) == ["fov_name", "track_id", "t", "id"]
    np.testing.assert_array_equal(loaded["features"].values, dataset["features"].values)


def test_failed_reduction_is_skipped_with_a_warning(tmp_path, caplog):
    index = pd.DataFrame({"fov_name": ["A/1/0"] * 4, "id": range(4)})
    write_embedding_dataset(tmp_path / "e.zarr", np.ones((4, 3)), index, pca_kwargs={"n_components": "three"})
    assert "Skipping PCA" in caplog.text
    adata = ad.read_zarr(tmp_path / "e.zarr")
    assert "X_pca" not in adata.obsm
    assert adata.n_obs == 4


def test_missing_reduction_library_fails_at_construction(tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "umap" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ImportError, match=r"pip install 'viscy-utils\[eval\]'"):
        EmbeddingWriter(tmp_path / "e.zarr", umap_kwargs={})
