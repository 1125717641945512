import sys
from types import ModuleType, SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from viscy_utils.evaluation.linear_classifier import (
    classifier_model_name,
    load_and_combine_datasets,
    load_pipeline,
    load_pipeline_from_wandb,
    predict_from_config,
    predict_with_classifier,
    save_pipeline,
    save_pipeline_to_wandb,
    train_from_config,
    train_linear_classifier,
)
from viscy_utils.evaluation.linear_classifier_config import (
    LinearClassifierInferenceConfig,
    LinearClassifierTrainConfig,
)


def _tracked_adata(n_tracks=40, frames=5, dim=16, separable=True, seed=0, labels=("alive", "dead")):
    """Cells (tracks) with several frames each; a track keeps its label."""
    rng = np.random.default_rng(seed)
    track_labels = rng.choice(labels, size=n_tracks)
    rows, features = [], []
    centers = {label: rng.normal(0, 3, dim) for label in labels}
    for track, label in enumerate(track_labels):
        cell = centers[label] if separable else rng.normal(0, 3, dim)
        for t in range(frames):
            features.append(cell + rng.normal(0, 0.5, dim))
            rows.append(
                {"fov_name": f"A/{1 + track % 4}/0", "track_id": track, "t": t, "id": track * 10 + t, "state": label}
            )
    obs = pd.DataFrame(rows)
    obs.index = obs.index.astype(str)
    return ad.AnnData(X=np.asarray(features, dtype=np.float32), obs=obs)


def test_separable_embeddings_are_classified_accurately():
    adata = _tracked_adata(separable=True)
    pipeline, metrics = train_linear_classifier(adata, "state")
    assert metrics["val_accuracy"] > 0.95
    assert metrics["val_auroc"] > 0.95
    for label in ("alive", "dead"):
        for name in ("precision", "recall", "f1"):
            assert 0.9 < metrics[f"val_{label}_{name}"] <= 1
    assert set(pipeline.classes_) == {"alive", "dead"}


def test_shuffled_labels_are_near_chance():
    adata = _tracked_adata(n_tracks=80, separable=True, seed=1)
    shuffled = adata.obs.groupby("track_id")["state"].first().sample(frac=1, random_state=0).to_numpy()
    adata.obs["state"] = shuffled[adata.obs["track_id"].to_numpy()]
    _, metrics = train_linear_classifier(adata, "state")
    assert 0.25 < metrics["val_accuracy"] < 0.75
    assert metrics["train_accuracy"] > metrics["val_accuracy"]


def test_split_keeps_every_track_on_one_side(monkeypatch):
    # regression: a per-sample split put frames of one cell in both train and validation
    import viscy_utils.evaluation.linear_classifier as module

    adata = _tracked_adata()
    train, val = module._split_indices(adata.obs, adata.obs["state"].to_numpy(), 0.8, seed=0)
    train_tracks = set(adata.obs["track_id"].iloc[train])
    val_tracks = set(adata.obs["track_id"].iloc[val])
    assert train_tracks.isdisjoint(val_tracks)
    assert len(val) > 0


def test_scaler_and_pca_are_fitted_on_the_training_split_only():
    # regression: scaler and PCA were fitted on all data before the split (leakage)
    import viscy_utils.evaluation.linear_classifier as module

    adata = _tracked_adata()
    pipeline, _ = train_linear_classifier(adata, "state", use_pca=True, n_pca_components=4)
    train, _ = module._split_indices(adata.obs, adata.obs["state"].to_numpy(), 0.8, seed=42)
    np.testing.assert_allclose(pipeline.scaler.mean_, adata.X[train].astype(np.float64).mean(axis=0), rtol=1e-6)
    assert pipeline.pca.n_samples_ == len(train)
    assert pipeline.transform(adata.X).shape == (adata.n_obs, 4)


def test_multiclass_auroc_and_full_training():
    adata = _tracked_adata(labels=("alive", "dead", "apoptotic"))
    _, metrics = train_linear_classifier(adata, "state")
    assert metrics["val_auroc"] > 0.9
    _, metrics = train_linear_classifier(adata, "state", split_train_data=1.0)
    assert not any(key.startswith("val_") for key in metrics)


def test_pipeline_saved_and_loaded_locally(tmp_path):
    adata = _tracked_adata()
    pipeline, _ = train_linear_classifier(adata, "state", use_pca=True, n_pca_components=3)
    save_pipeline(pipeline, tmp_path, "clf")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_pipeline(pipeline, tmp_path, "clf")
    loaded, config = load_pipeline(tmp_path)
    assert config["task"] == "state"
    assert loaded.task == "state"
    np.testing.assert_allclose(loaded.predict_proba(adata.X), pipeline.predict_proba(adata.X))
    with pytest.raises(FileNotFoundError, match=r"\['clf'\]"):
        load_pipeline(tmp_path, "other")


def test_model_name_gets_the_pca_suffix_from_the_flat_config():
    # regression: the suffix read a nested "preprocessing" key and never appeared
    config = {
        "task": "infection_state",
        "input_channel": "phase",
        "marker": "g3bp1",
        "use_pca": True,
        "n_pca_components": 8,
    }
    assert classifier_model_name(config) == "linear-classifier-infection_state-phase-g3bp1-pca8"
    assert classifier_model_name({"task": "t", "input_channel": "sensor"}) == "linear-classifier-t-sensor"


def _organelle_adata():
    rng = np.random.default_rng(0)
    obs = pd.DataFrame(
        {
            "fov_name": [f"A/{1 + i % 4}/0" for i in range(60)],
            "track_id": range(60),
            "t": 0,
            "id": range(60),
            "cell_death_state": rng.choice(["alive", "dead", "apoptotic"], 60),
        }
    )
    obs.index = obs.index.astype(str)
    return ad.AnnData(X=rng.normal(size=(60, 16)).astype(np.float32), obs=obs)


def test_predict_with_classifier_metadata_and_wells():
    adata = _organelle_adata()
    pipeline, _ = train_linear_classifier(adata, "cell_death_state")
    out = predict_with_classifier(adata.copy(), pipeline, "cell_death_state")
    assert not any(key.startswith("classifier_") for key in out.uns)
    metadata = {"artifact_name": "clf:v1", "artifact_id": "abc", "artifact_version": "v1"}
    out = predict_with_classifier(adata.copy(), pipeline, "organelle_state_g3bp1", metadata, include_wells=["A/1"])
    in_well = out.obs["fov_name"].str.startswith("A/1/").to_numpy()
    predicted = out.obs["predicted_organelle_state_g3bp1"]
    assert predicted[in_well].notna().all()
    assert predicted[~in_well].isna().all()
    proba = out.obsm["predicted_organelle_state_g3bp1_proba"]
    assert np.isfinite(proba[in_well]).all()
    assert np.isnan(proba[~in_well]).all()
    np.testing.assert_allclose(proba[in_well].sum(axis=1), 1)
    assert list(out.uns["predicted_organelle_state_g3bp1_classes"]) == ["alive", "apoptotic", "dead"]
    assert out.uns["classifier_organelle_state_g3bp1_artifact"] == "clf:v1"
    assert out.uns["classifier_organelle_state_g3bp1_id"] == "abc"
    assert out.uns["classifier_organelle_state_g3bp1_version"] == "v1"


def _write_dataset(tmp_path, adata, name):
    emb = tmp_path / f"{name}.zarr"
    ann = tmp_path / f"{name}.csv"
    annotations = adata.obs[["fov_name", "id", "state"]].astype({"fov_name": str, "state": str})
    annotations["fov_name"] = "/" + annotations["fov_name"]
    adata.write_zarr(emb)
    annotations.loc[annotations.index[:5], "state"] = "unknown"
    annotations.to_csv(ann, index=False)
    return emb, ann


def test_load_and_combine_datasets(tmp_path, caplog):
    adata = _tracked_adata()
    emb, ann = _write_dataset(tmp_path, adata.copy(), "one")
    combined = load_and_combine_datasets(
        [{"embeddings": emb, "annotations": ann}, {"embeddings": emb, "annotations": ann, "include_wells": ["A/1"]}],
        "state",
    )
    in_a1 = int(adata.obs["fov_name"].iloc[5:].str.startswith("A/1/").sum())
    assert combined.n_obs == (adata.n_obs - 5) + in_a1
    assert "unknown" not in set(combined.obs["state"])
    assert combined.obs_names.is_unique
    with pytest.raises(ValueError, match="No training data"):
        load_and_combine_datasets([{"embeddings": emb, "annotations": ann, "include_wells": ["Z/9"]}], "state")


def test_train_and_predict_from_configs(tmp_path):
    adata = _tracked_adata()
    emb, ann = _write_dataset(tmp_path, adata.copy(), "data")
    unlabelled = adata.copy()
    del unlabelled.obs["state"]
    unlabelled.write_zarr(tmp_path / "new.zarr")
    train_config = LinearClassifierTrainConfig(
        task="infection_state",
        input_channel="phase",
        embedding_model="tiny",
        train_datasets=[{"embeddings": str(emb), "annotations": str(ann)}],
        output_dir=tmp_path / "models",
    )
    # the task column of this synthetic set is "state": rename to the configured task
    data = ad.read_zarr(emb)
    data.obs["infection_state"] = data.obs.pop("state")
    data.write_zarr(emb)
    annotations = pd.read_csv(ann).rename(columns={"state": "infection_state"})
    annotations.to_csv(ann, index=False)
    _pipeline, metrics = train_from_config(train_config)
    assert metrics["val_accuracy"] > 0.95
    model_dir = tmp_path / "models"
    assert (model_dir / "linear-classifier-infection_state-phase_config.json").exists()
    # regression: training again into the same output_dir failed only after training
    settings = train_config.model_dump()
    with pytest.raises(ValueError, match=r"already saved.*overwrite: true"):
        LinearClassifierTrainConfig(**settings)
    train_from_config(LinearClassifierTrainConfig(**{**settings, "overwrite": True}))
    inference = LinearClassifierInferenceConfig(
        pipeline_dir=model_dir, embeddings_path=tmp_path / "new.zarr", output_path=tmp_path / "out.zarr"
    )
    predict_from_config(inference)
    out = ad.read_zarr(tmp_path / "out.zarr")
    accuracy = np.mean(out.obs["predicted_infection_state"].astype(str).to_numpy() == adata.obs["state"].to_numpy())
    assert accuracy > 0.95


def test_inference_without_output_path_refuses_to_write_into_the_embeddings(tmp_path):
    # regression: predictions were written back into the user's embeddings store unasked
    adata = _tracked_adata()
    pipeline, _ = train_linear_classifier(adata, "state")
    save_pipeline(pipeline, tmp_path / "models", "clf")
    emb = tmp_path / "embeddings.zarr"
    adata.write_zarr(emb)
    settings = {"pipeline_dir": str(tmp_path / "models"), "model_name": "clf", "embeddings_path": str(emb)}
    with pytest.raises(ValueError, match=r"overwrite: true.*output_path"):
        LinearClassifierInferenceConfig(**settings)
    assert "predicted_state" not in ad.read_zarr(emb).obs
    predict_from_config(LinearClassifierInferenceConfig(**settings, overwrite=True))
    assert ad.read_zarr(emb).obs["predicted_state"].notna().all()


def test_train_config_validation(tmp_path):
    emb = tmp_path / "e.zarr"
    emb.mkdir()
    ann = tmp_path / "a.csv"
    ann.write_text("fov_name,id\n")
    base = {
        "task": "infection_state",
        "input_channel": "phase",
        "embedding_model": "m",
        "train_datasets": [{"embeddings": str(emb), "annotations": str(ann)}],
        "output_dir": str(tmp_path),
    }
    assert LinearClassifierTrainConfig(**base).split_train_data == 0.8
    assert LinearClassifierTrainConfig(**base, split_train_data=1.0).split_train_data == 1.0
    with pytest.raises(ValueError, match="n_pca_components"):
        LinearClassifierTrainConfig(**base, use_pca=True)
    with pytest.raises(ValueError, match="task"):
        LinearClassifierTrainConfig(**{**base, "task": "mood"})
    with pytest.raises(ValueError, match="does not exist"):
        LinearClassifierTrainConfig(**{**base, "train_datasets": [{"embeddings": "/nope", "annotations": str(ann)}]})
    with pytest.raises(ValueError, match="output_dir"):
        LinearClassifierTrainConfig(**{**base, "output_dir": None})
    with pytest.raises(ValueError, match="split_train_data"):
        LinearClassifierTrainConfig(**base, split_train_data=0)


def test_inference_config(tmp_path):
    emb = tmp_path / "e.zarr"
    emb.mkdir()
    config = LinearClassifierInferenceConfig(
        wandb_project="p", model_name="m", embeddings_path=emb, include_wells=["A/1"], overwrite=True
    )
    assert config.output_path is None
    assert config.include_wells == ["A/1"]
    out = tmp_path / "out.zarr"
    assert (
        LinearClassifierInferenceConfig(pipeline_dir=tmp_path, embeddings_path=emb, output_path=out).include_wells
        is None
    )
    with pytest.raises(ValueError, match="embeddings_path"):
        LinearClassifierInferenceConfig(
            pipeline_dir=tmp_path, embeddings_path=tmp_path / "missing.zarr", output_path=out
        )
    with pytest.raises(ValueError, match="exactly one"):
        LinearClassifierInferenceConfig(embeddings_path=emb, output_path=out)
    with pytest.raises(ValueError, match="overwrite"):
        LinearClassifierInferenceConfig(pipeline_dir=tmp_path, embeddings_path=emb, output_path=emb)


def test_wandb_is_optional_and_used_when_configured(tmp_path, monkeypatch):
    """W&B functions go through the wandb API; a fake module records the calls (no network)."""
    calls = {}

    class Artifact:
        def __init__(self, name, type, metadata):
            self.name, self.type, self.metadata, self.files = name, type, metadata, []
            self.version, self.id = "v0", "id0"

        def add_dir(self, directory):
            self.files = sorted(p.name for p in __import__("pathlib").Path(directory).iterdir())
            calls["saved_dir"] = tmp_path / "artifact"
            __import__("shutil").copytree(directory, calls["saved_dir"])

        def wait(self):
            return self

        def download(self):
            return str(calls["saved_dir"])

    run = SimpleNamespace(
        summary={},
        log_artifact=lambda a: calls.setdefault("artifact", a),
        finish=lambda: calls.setdefault("finished", True),
        name=None,
    )
    fake = ModuleType("wandb")
    fake.init = lambda **kwargs: calls.setdefault("init", kwargs) and run
    fake.log = lambda metrics: calls.setdefault("log", metrics)
    fake.Artifact = Artifact
    fake.Api = lambda: SimpleNamespace(artifact=lambda path, type: calls.setdefault("path", path) and calls["artifact"])
    monkeypatch.setitem(sys.modules, "wandb", fake)

    adata = _tracked_adata()
    pipeline, metrics = train_linear_classifier(adata, "state", use_pca=True, n_pca_components=3)
    config = {
        "task": "state",
        "input_channel": "phase",
        "use_pca": True,
        "n_pca_components": 3,
        "embedding_model": "tiny",
    }
    name = save_pipeline_to_wandb(pipeline, metrics, config, "proj", tags=["a"])
    assert name == "linear-classifier-state-phase-pca3"
    assert calls["init"]["project"] == "proj"
    assert run.summary["val_accuracy"] == metrics["val_accuracy"]
    assert calls["log"] == metrics
    assert calls["artifact"].files == [
        f"{name}.joblib",
        f"{name}_config.json",
        f"{name}_pca.joblib",
        f"{name}_scaler.joblib",
    ]
    assert run.name == f"{name}-v0"
    loaded, _, metadata = load_pipeline_from_wandb("proj", name, wandb_entity="lab")
    assert calls["path"] == f"lab/proj/{name}:latest"
    assert metadata == {"artifact_name": name, "artifact_id": "id0", "artifact_version": "v0"}
    np.testing.assert_allclose(loaded.predict_proba(adata.X), pipeline.predict_proba(adata.X))


def test_missing_wandb_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match=r"viscy-utils\[wandb\]"):
        load_pipeline_from_wandb("p", "m")
