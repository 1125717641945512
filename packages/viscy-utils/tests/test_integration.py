"""End to end on a synthetic plate: fit from YAML, predict embeddings, evaluate them."""

import textwrap

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from viscy_utils.evaluation import load_annotation_anndata
from viscy_utils.evaluation.distance import compute_track_displacement
from viscy_utils.evaluation.linear_classifier import predict_with_classifier, train_linear_classifier
from viscy_utils.evaluation.smoothness import compute_embeddings_smoothness


def test_fit_fast_dev_run_on_a_synthetic_plate(tmp_path, synthetic_plate, monkeypatch, viscy):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "fit.yml"
    config.write_text(
        textwrap.dedent(
            f"""
            trainer:
              accelerator: cpu
              fast_dev_run: 2
              enable_progress_bar: false
            model:
              class_path: viscy_utils.testing.TinyRegressor
              init_args:
                in_channels: 1
                out_channels: 1
            data:
              class_path: viscy_data.hcs.HCSDataModule
              init_args:
                data_path: {synthetic_plate.store_path}
                source_channel: Phase3D
                target_channel: GFP
                z_window_size: 1
                yx_patch_size: [32, 32]
                batch_size: 2
                num_workers: 0
            """
        )
    )
    cli = viscy("fit", "-c", str(config))
    assert cli.trainer.state.finished
    assert cli.trainer.global_step == 2
    assert cli.trainer.callback_metrics["loss/train"].isfinite()


@pytest.fixture(scope="module")
def predicted_embeddings(synthetic_plate, tmp_path_factory):
    import sys

    from viscy_utils.cli import run_cli

    tmp_path = tmp_path_factory.mktemp("predict")
    output = tmp_path / "embeddings.zarr"
    config = tmp_path / "predict.yml"
    config.write_text(
        textwrap.dedent(
            f"""
            trainer:
              accelerator: cpu
              logger: false
              enable_progress_bar: false
              default_root_dir: {tmp_path}
              callbacks:
                - class_path: viscy_utils.callbacks.EmbeddingWriter
                  init_args:
                    output_path: {output}
                    pca_kwargs: {{n_components: 2}}
            model:
              class_path: viscy_utils.testing.TinyEmbedder
              init_args:
                in_channels: 1
            data:
              class_path: viscy_data.triplet.TripletDataModule
              init_args:
                data_path: {synthetic_plate.store_path}
                tracks_path: {synthetic_plate.tracks_path}
                source_channel: [Phase3D]
                z_range: [1, 3]
                initial_yx_patch_size: [16, 16]
                final_yx_patch_size: [16, 16]
                batch_size: 8
                num_workers: 0
            """
        )
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["viscy", "predict", "-c", str(config)])
        cli = run_cli()
    return output, cli


def test_predict_writes_an_anndata_store(predicted_embeddings, synthetic_plate):
    output, cli = predicted_embeddings
    adata = ad.read_zarr(output)
    n_cells = len(cli.datamodule.predict_dataset)
    assert adata.n_obs == n_cells > 0
    assert adata.X.shape == (n_cells, 8)
    assert adata.obsm["X_projections"].shape == (n_cells, 4)
    assert adata.obsm["X_pca"].shape == (n_cells, 2)
    assert adata.obs_names.is_unique
    assert {"fov_name", "track_id", "t", "id"} <= set(adata.obs.columns)
    assert set(adata.obs["fov_name"]) <= set(synthetic_plate.fov_names)
    assert adata.uns["data_path"] == str(synthetic_plate.store_path)
    assert adata.uns["tracks_path"] == str(synthetic_plate.tracks_path)
    assert adata.uns["model"] == "viscy_utils.testing.modules.TinyEmbedder"
    tracks = pd.concat(
        [
            pd.read_csv(next((synthetic_plate.tracks_path / name).glob("*.csv"))).assign(fov_name=name)
            for name in synthetic_plate.fov_names
        ]
    )
    merged = adata.obs.astype({"fov_name": str}).merge(
        tracks, on=["fov_name", "track_id", "t", "id"], how="left", indicator=True
    )
    assert (merged["_merge"] == "both").all()


def test_predict_refuses_to_overwrite_embeddings(predicted_embeddings, tmp_path, viscy):
    output, _ = predicted_embeddings
    with pytest.raises(FileExistsError, match="overwrite=True"):
        viscy("predict", "-c", str(output.parent / "predict.yml"))


def test_evaluation_runs_on_predicted_embeddings(predicted_embeddings, synthetic_plate):
    output, _ = predicted_embeddings
    adata = ad.read_zarr(output)
    stats, _, per_track = compute_embeddings_smoothness(adata)
    assert np.isfinite([stats["smoothness_score"], stats["dynamic_range"]]).all()
    assert per_track["n_pairs"].sum() == len(compute_track_displacement(adata).get(1, []))
    adata = load_annotation_anndata(adata, synthetic_plate.annotations_path, "infection_state")
    labelled = adata[adata.obs["infection_state"].notna() & (adata.obs["infection_state"] != -1)].copy()
    assert labelled.obs["infection_state"].nunique() == 2
    pipeline, metrics = train_linear_classifier(labelled, "infection_state", split_train_data=0.7)
    assert 0 <= metrics["val_accuracy"] <= 1
    predicted = predict_with_classifier(adata, pipeline, "infection_state", include_wells=["A/2"])
    in_a2 = predicted.obs["fov_name"].astype(str).str.startswith("A/2/")
    assert predicted.obs.loc[in_a2, "predicted_infection_state"].notna().all()
