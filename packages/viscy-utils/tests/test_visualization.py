import numpy as np
import pandas as pd
import pytest

from viscy_utils.callbacks.embedding_writer import write_embedding_dataset
from viscy_utils.evaluation.visualization import EmbeddingVisualizationApp, find_free_port


@pytest.fixture
def explorer_inputs(synthetic_plate, tmp_path):
    fov = synthetic_plate.fov_names[0]
    tracks = pd.read_csv(next((synthetic_plate.tracks_path / fov).glob("*.csv")))
    index = tracks[["track_id", "t", "id"]].assign(fov_name="/" + fov)
    features = np.random.default_rng(0).normal(size=(len(index), 6))
    embeddings = tmp_path / "emb.zarr"
    write_embedding_dataset(embeddings, features, index)
    return fov, tracks, embeddings


def _app(synthetic_plate, embeddings, fov_tracks, **kwargs):
    return EmbeddingVisualizationApp(
        data_path=synthetic_plate.store_path,
        tracks_path=synthetic_plate.tracks_path,
        features_path=embeddings,
        channels_to_display=["Phase3D", "GFP"],
        fov_tracks=fov_tracks,
        z_range=(0, 3),
        yx_patch_size=(16, 16),
        num_loading_workers=2,
        **kwargs,
    )


def test_explorer_selects_tracks_loads_thumbnails_and_caches(synthetic_plate, explorer_inputs, tmp_path):
    fov, tracks, embeddings = explorer_inputs
    first_track = int(tracks["track_id"].iloc[0])
    cache = tmp_path / "cache.pkl"
    app = _app(synthetic_plate, embeddings, {fov: [first_track]}, cache_path=cache, output_dir=tmp_path)
    assert (app.table["track_id"] == first_track).all()
    assert len(app.table) == int((tracks["track_id"] == first_track).sum())
    assert [c for c in app.table.columns if c.startswith("PC")] == ["PC1", "PC2", "PC3"]
    app.preload_images()
    assert len(app.images) == len(app.table)
    assert set(next(iter(app.images.values()))) == {"Phase3D", "GFP"}
    assert cache.exists()
    again = _app(synthetic_plate, embeddings, {fov: [first_track]}, cache_path=cache)
    assert again.load_cache()
    assert again.images == app.images
    other = _app(synthetic_plate, embeddings, {fov: "all"}, cache_path=cache)
    assert not other.load_cache()  # made with other settings

    cells = app.thumbnails_for([0])
    assert cells[0]["fov_name"] == fov
    assert cells[0]["images"]["GFP"]
    app.add_cluster([0, 1], "early")
    path = app.save_clusters_to_csv()
    clusters = pd.read_csv(path)
    assert list(clusters.columns) == ["cluster_id", "cluster_name", "track_id", "time", "fov_name", "cluster_size"]
    assert clusters["cluster_size"].tolist() == [2, 2]
    assert clusters["cluster_name"].tolist() == ["early", "early"]
    with pytest.raises(FileExistsError):
        app.save_clusters_to_csv()

    dash_app = app.build_app()
    figure = app.figure("PC2", "PC3", "t")
    assert figure.data[0].x.tolist() == pytest.approx(app.table["PC2"].tolist())
    assert "scatter" in str(dash_app.layout)


def test_explorer_validates_inputs(synthetic_plate, explorer_inputs):
    fov, _, embeddings = explorer_inputs
    with pytest.raises(ValueError, match="channels present"):
        EmbeddingVisualizationApp(
            synthetic_plate.store_path, synthetic_plate.tracks_path, embeddings, ["DAPI"], {fov: "all"}
        )
    with pytest.raises(ValueError, match="FOVs present"):
        _app(synthetic_plate, embeddings, {"Z/9/9": "all"})
    with pytest.raises(ValueError, match="list of track ids or 'all'"):
        _app(synthetic_plate, embeddings, {fov: "some"})


def test_find_free_port_skips_a_taken_port():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert find_free_port([port, 0]) == 0
        with pytest.raises(RuntimeError, match="No free port"):
            find_free_port([port])
