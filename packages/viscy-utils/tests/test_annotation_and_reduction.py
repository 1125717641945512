import anndata as ad
import numpy as np
import pandas as pd
import pytest

from viscy_utils.evaluation import load_annotation_anndata
from viscy_utils.evaluation.annotation import convert
from viscy_utils.evaluation.dimensionality_reduction import compute_pca


def _adata():
    obs = pd.DataFrame({"fov_name": ["A/1/0", "A/1/0", "B/2/1"], "id": [1, 2, 3]}, index=["0", "1", "2"])
    return ad.AnnData(X=np.zeros((3, 2), dtype=np.float32), obs=obs)


def test_load_annotation_anndata_matches_fov_and_id(tmp_path, caplog):
    path = tmp_path / "ann.csv"
    pd.DataFrame({"fov_name": ["/B/2/1", "/A/1/0"], "id": [3, 1], "infection_state": [1, 0]}).to_csv(path, index=False)
    adata = load_annotation_anndata(_adata(), path, "infection_state", categories={0: "mock", 1: "infected"})
    assert adata.obs["infection_state"].tolist()[::2] == ["mock", "infected"]
    assert pd.isna(adata.obs["infection_state"].iloc[1])
    assert "1 of 3 cells" in caplog.text
    with pytest.raises(KeyError, match="columns present"):
        load_annotation_anndata(_adata(), path, "division")


def test_load_annotation_rejects_duplicates(tmp_path):
    path = tmp_path / "ann.csv"
    pd.DataFrame({"fov_name": ["A/1/0", "A/1/0"], "id": [1, 1], "s": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="more than once"):
        load_annotation_anndata(_adata(), path, "s")


def test_convert_legacy_xarray(tmp_path):
    import xarray as xr

    n = 4
    coords = {
        "fov_name": ("sample", ["/A/1/0"] * n),
        "track_id": ("sample", [0, 0, 1, 1]),
        "t": ("sample", [0, 1, 0, 1]),
        "id": ("sample", np.arange(n)),
    }
    for i in (1, 2, 10):
        coords[f"UMAP{i}"] = ("sample", np.full(n, float(i)))
    dataset = xr.Dataset(
        {
            "features": (("sample", "feature"), np.arange(n * 3, dtype=float).reshape(n, 3)),
            "projections": (("sample", "projection"), np.ones((n, 2))),
        },
        coords=coords,
    )
    dataset.to_zarr(tmp_path / "legacy.zarr")
    out = tmp_path / "out.zarr"
    adata = convert(tmp_path / "legacy.zarr", out, return_anndata=True)
    assert adata.obs["fov_name"].tolist() == ["A/1/0"] * n
    np.testing.assert_array_equal(adata.obsm["X_umap"][0], [1, 2, 10])  # natural order
    np.testing.assert_array_equal(adata.obsm["X_projections"], np.ones((n, 2)))
    assert ad.read_zarr(out).n_obs == n
    with pytest.raises(FileExistsError):
        convert(tmp_path / "legacy.zarr", out)
    assert convert(tmp_path / "legacy.zarr", out, overwrite=True) is None


def test_compute_pca_components_and_metadata():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(50, 2))
    features = latent @ rng.normal(size=(2, 6)) + 0.01 * rng.normal(size=(50, 6))
    obs = pd.DataFrame({"fov_name": ["A/1/0"] * 50, "id": range(50), "t": 0, "track_id": range(50)})
    obs.index = obs.index.astype(str)
    pcs, pca_df = compute_pca(ad.AnnData(X=features, obs=obs), n_components=10)
    assert pcs.shape == (50, 6)  # clamped to min(N, D)
    assert list(pca_df.columns[:6]) == [f"PC{i}" for i in range(1, 7)]
    assert {"id", "fov_name", "t", "track_id"} <= set(pca_df.columns)
    explained = pcs.var(axis=0)
    assert explained[:2].sum() / explained.sum() > 0.99


def test_missing_extra_names_the_install_command(monkeypatch):
    import sys

    from viscy_utils.evaluation.dimensionality_reduction import compute_phate

    monkeypatch.setitem(sys.modules, "phate", None)
    with pytest.raises(ImportError, match=r"pip install 'viscy-utils\[eval\]'"):
        compute_phate(np.zeros((5, 2)))
