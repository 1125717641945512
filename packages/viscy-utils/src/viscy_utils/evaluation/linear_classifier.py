"""Linear classifiers on cell embeddings: train, evaluate, save, load and predict.

Needs ``pip install 'viscy-utils[anndata,eval]'``; W&B (``pip install 'viscy-utils[wandb]'``)
is only used by the ``*_wandb`` functions, never required.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from viscy_utils._optional import import_optional
from viscy_utils.evaluation._embeddings import embedding_matrix, require_columns
from viscy_utils.evaluation.annotation import load_annotation_anndata

if TYPE_CHECKING:
    from viscy_utils.evaluation.linear_classifier_config import (
        LinearClassifierInferenceConfig,
        LinearClassifierTrainConfig,
    )

__all__ = [
    "LinearClassifierPipeline",
    "classifier_model_name",
    "load_and_combine_datasets",
    "load_pipeline",
    "load_pipeline_from_wandb",
    "predict_from_config",
    "predict_with_classifier",
    "save_pipeline",
    "save_pipeline_to_wandb",
    "train_from_config",
    "train_linear_classifier",
]

_logger = logging.getLogger(__name__)

_IGNORED_LABELS = ("unknown",)


class LinearClassifierPipeline:
    """A fitted classifier with the scaler and PCA that prepare its input.

    Parameters
    ----------
    classifier : sklearn classifier
        Fitted, with ``predict``, ``predict_proba`` and ``classes_``.
    scaler : sklearn transformer, optional
        Fitted ``StandardScaler`` applied first.
    pca : sklearn transformer, optional
        Fitted ``PCA`` applied after the scaler.
    config : dict
        Training settings, saved with the pipeline.
    task : str
        Annotation column the classifier predicts.
    """

    def __init__(
        self,
        classifier: Any,
        scaler: Any | None = None,
        pca: Any | None = None,
        config: Mapping[str, Any] | None = None,
        task: str = "",
    ) -> None:
        self.classifier = classifier
        self.scaler = scaler
        self.pca = pca
        self.config = dict(config or {})
        self.task = task

    @property
    def classes_(self) -> np.ndarray:
        """Class labels, in the column order of :meth:`predict_proba`."""
        return self.classifier.classes_

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Apply the scaler, then the PCA."""
        if self.scaler is not None:
            X = self.scaler.transform(X)
        if self.pca is not None:
            X = self.pca.transform(X)
        return X

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predict class labels of ``(N, D)`` embeddings."""
        return self.classifier.predict(self.transform(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Predict class probabilities ``(N, K)`` of ``(N, D)`` embeddings."""
        return self.classifier.predict_proba(self.transform(X))


def classifier_model_name(config: Mapping[str, Any]) -> str:
    """Name of a trained pipeline: ``linear-classifier-{task}-{input_channel}[-{marker}][-pca{n}]``.

    Parameters
    ----------
    config : Mapping
        Training config with ``task``, ``input_channel`` and optional ``marker``,
        ``use_pca`` and ``n_pca_components`` (flat keys, as the training config holds them).

    Returns
    -------
    str
        The name.
    """
    name = f"linear-classifier-{config['task']}-{config['input_channel']}"
    if config.get("marker"):
        name += f"-{config['marker']}"
    if config.get("use_pca") and config.get("n_pca_components"):
        name += f"-pca{config['n_pca_components']}"
    return name


def save_pipeline(
    pipeline: LinearClassifierPipeline, directory: str | Path, name: str, overwrite: bool = False
) -> Path:
    """Save a pipeline as ``{name}.joblib``, ``{name}_config.json`` and optional scaler/PCA files.

    Parameters
    ----------
    pipeline : LinearClassifierPipeline
        The pipeline.
    directory : str or Path
        Directory to write into (created if missing).
    name : str
        File stem.
    overwrite : bool
        Replace existing files of the same name.

    Returns
    -------
    Path
        The directory.

    Raises
    ------
    FileExistsError
        If the pipeline's files exist and ``overwrite`` is False.
    """
    joblib = import_optional("joblib", extra="eval")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {"classifier": directory / f"{name}.joblib", "config": directory / f"{name}_config.json"}
    if pipeline.scaler is not None:
        files["scaler"] = directory / f"{name}_scaler.joblib"
    if pipeline.pca is not None:
        files["pca"] = directory / f"{name}_pca.joblib"
    existing = [str(path) for path in files.values() if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"Pipeline files exist: {existing}; pass overwrite=True to replace them.")
    for part in ("classifier", "scaler", "pca"):
        if part in files:
            joblib.dump(getattr(pipeline, part), files[part])
    files["config"].write_text(json.dumps({"task": pipeline.task, **pipeline.config}, indent=2, default=str))
    return directory


def load_pipeline(directory: str | Path, name: str | None = None) -> tuple[LinearClassifierPipeline, dict[str, Any]]:
    """Load a pipeline saved by :func:`save_pipeline`.

    Parameters
    ----------
    directory : str or Path
        Directory holding the files.
    name : str, optional
        File stem; may be omitted when the directory holds one pipeline.

    Returns
    -------
    tuple
        The pipeline and its config.

    Raises
    ------
    FileNotFoundError
        If no (or no unique) pipeline is found; the message lists the pipelines present.
    """
    joblib = import_optional("joblib", extra="eval")
    directory = Path(directory)
    present = sorted(path.name.removesuffix("_config.json") for path in directory.glob("*_config.json"))
    if name is None:
        if len(present) != 1:
            raise FileNotFoundError(f"Name the pipeline to load from {directory}; pipelines present: {present}.")
        name = present[0]
    config_path = directory / f"{name}_config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"No pipeline {name!r} in {directory}; pipelines present: {present}.")
    config = json.loads(config_path.read_text())
    optional = {
        part: joblib.load(path) for part in ("scaler", "pca") if (path := directory / f"{name}_{part}.joblib").exists()
    }
    pipeline = LinearClassifierPipeline(
        classifier=joblib.load(directory / f"{name}.joblib"),
        scaler=optional.get("scaler"),
        pca=optional.get("pca"),
        config={key: value for key, value in config.items() if key != "task"},
        task=config.get("task", ""),
    )
    return pipeline, config


def _well_mask(fov_names: pd.Series, include_wells: Sequence[str] | None) -> np.ndarray:
    """Cells whose ``fov_name`` lies in one of the wells (``"A/1"`` matches ``"A/1/..."``)."""
    names = fov_names.astype(str).str.strip("/")
    if include_wells is None:
        return np.ones(len(names), dtype=bool)
    prefixes = tuple(well.strip("/") + "/" for well in include_wells)
    return names.str.startswith(prefixes).to_numpy()


def load_and_combine_datasets(datasets: Sequence[Mapping[str, Any]], task: str) -> Any:
    """Read annotated embedding stores and keep the cells labelled for ``task``.

    Parameters
    ----------
    datasets : sequence of Mapping
        Each with ``embeddings`` (AnnData zarr), ``annotations`` (CSV) and optional
        ``include_wells`` (e.g. ``["A/1"]``).
    task : str
        Annotation column.

    Returns
    -------
    AnnData
        The cells of all datasets with a known label (``"unknown"`` and NaN dropped), outer
        joined.

    Raises
    ------
    ValueError
        If no labelled cell is left in any dataset.
    """
    anndata = import_optional("anndata", extra="anndata")
    parts = []
    for dataset in datasets:
        adata = anndata.read_zarr(dataset["embeddings"])
        try:
            adata = load_annotation_anndata(adata, dataset["annotations"], task)
        except KeyError as error:
            _logger.warning("Skipping %s: %s", dataset["embeddings"], error)
            continue
        keep = _well_mask(adata.obs["fov_name"], dataset.get("include_wells"))
        labels = adata.obs[task]
        keep = keep & labels.notna().to_numpy() & ~labels.astype(str).isin(_IGNORED_LABELS).to_numpy()
        dropped = int((~keep).sum())
        if dropped:
            _logger.warning(
                "%s: dropping %d of %d cells (other wells or no label).", dataset["embeddings"], dropped, adata.n_obs
            )
        if keep.any():
            parts.append(adata[keep].copy())
    if not parts:
        raise ValueError("No training data loaded from any dataset!")
    combined = anndata.concat(parts, join="outer", index_unique="-") if len(parts) > 1 else parts[0]
    return combined


def _track_groups(obs: pd.DataFrame) -> np.ndarray | None:
    """One group per tracked cell (``fov_name`` + ``track_id``), or None without those columns."""
    if not {"fov_name", "track_id"} <= set(obs.columns):
        return None
    return (obs["fov_name"].astype(str).str.strip("/") + "/" + obs["track_id"].astype(str)).to_numpy()


def _classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray, classes: np.ndarray, prefix: str
) -> dict[str, float]:
    """Accuracy, weighted and per-class precision/recall/F1, and AUROC (binary or macro one-vs-rest)."""
    metrics_module = import_optional("sklearn.metrics", extra="eval")
    metrics = {f"{prefix}_accuracy": float(metrics_module.accuracy_score(y_true, y_pred))}
    precision, recall, f1, _ = metrics_module.precision_recall_fscore_support(
        y_true, y_pred, average="weighted", zero_division=0
    )
    metrics.update(
        {f"{prefix}_weighted_precision": precision, f"{prefix}_weighted_recall": recall, f"{prefix}_weighted_f1": f1}
    )
    per_class = metrics_module.precision_recall_fscore_support(
        y_true, y_pred, labels=classes, average=None, zero_division=0
    )
    for i, label in enumerate(classes):
        for name, values in zip(("precision", "recall", "f1"), per_class[:3], strict=True):
            metrics[f"{prefix}_{label}_{name}"] = float(values[i])
    if len(np.unique(y_true)) < 2:
        _logger.warning("%s split holds one class only: AUROC is undefined (NaN).", prefix)
        metrics[f"{prefix}_auroc"] = float("nan")
    elif len(classes) == 2:
        metrics[f"{prefix}_auroc"] = float(metrics_module.roc_auc_score(y_true == classes[1], proba[:, 1]))
    else:
        present = np.isin(classes, np.unique(y_true))
        metrics[f"{prefix}_auroc"] = float(
            metrics_module.roc_auc_score(
                y_true,
                proba[:, present] / proba[:, present].sum(axis=1, keepdims=True),
                multi_class="ovr",
                average="macro",
                labels=classes[present],
            )
        )
    return {key: float(value) for key, value in metrics.items()}


def _split_indices(obs: pd.DataFrame, y: np.ndarray, train_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/validation indices; all frames of one tracked cell fall on the same side."""
    model_selection = import_optional("sklearn.model_selection", extra="eval")
    indices = np.arange(len(y))
    if train_fraction >= 1:
        return indices, indices[:0]
    groups = _track_groups(obs)
    if groups is None:
        _logger.warning("No fov_name/track_id columns: splitting by sample, frames of one cell may leak across.")
        return model_selection.train_test_split(
            indices, train_size=train_fraction, stratify=y, shuffle=True, random_state=seed
        )
    splitter = model_selection.GroupShuffleSplit(n_splits=1, train_size=train_fraction, random_state=seed)
    train, val = next(splitter.split(indices, y, groups))
    return train, val


def train_linear_classifier(
    adata: Any,
    task: str,
    use_scaling: bool = True,
    use_pca: bool = False,
    n_pca_components: int | None = None,
    classifier_params: Mapping[str, Any] | None = None,
    split_train_data: float = 0.8,
    random_seed: int = 42,
) -> tuple[LinearClassifierPipeline, dict[str, float]]:
    """Train a logistic-regression classifier of ``obs[task]`` on ``X``.

    The split is grouped by tracked cell (``fov_name`` + ``track_id``), so no cell has frames
    on both sides; the scaler and PCA are fitted on the training split only.

    Parameters
    ----------
    adata : AnnData
        Embeddings with the labels in ``obs[task]``.
    task : str
        Label column.
    use_scaling : bool
        Standard-scale features.
    use_pca : bool
        Reduce features with PCA.
    n_pca_components : int, optional
        PCA components (required with ``use_pca``).
    classifier_params : Mapping, optional
        ``LogisticRegression`` arguments.
    split_train_data : float
        Training fraction in ``(0, 1]``; 1 trains on everything without validation metrics.
    random_seed : int
        Seed of the split (and the default classifier seed).

    Returns
    -------
    tuple
        The pipeline and a dict of ``train_*`` and ``val_*`` metrics: accuracy, weighted and
        per-class precision/recall/F1, AUROC.

    Raises
    ------
    ValueError
        On a bad split fraction, missing PCA size or a single class.
    KeyError
        If ``obs`` lacks ``task``.
    """
    if not 0 < split_train_data <= 1:
        raise ValueError(f"split_train_data must lie in (0, 1], got {split_train_data}.")
    if use_pca and not n_pca_components:
        raise ValueError("use_pca=True needs n_pca_components.")
    require_columns(adata.obs, [task], what="embeddings obs")
    linear_model = import_optional("sklearn.linear_model", extra="eval")
    preprocessing = import_optional("sklearn.preprocessing", extra="eval")
    decomposition = import_optional("sklearn.decomposition", extra="eval")
    X = embedding_matrix(adata)
    y = adata.obs[task].astype(str).to_numpy()
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"Training needs at least two classes of {task!r}, found {list(classes)}.")
    train, val = _split_indices(adata.obs.reset_index(drop=True), y, split_train_data, random_seed)
    scaler = preprocessing.StandardScaler().fit(X[train]) if use_scaling else None
    pca = None
    if use_pca:
        scaled = scaler.transform(X[train]) if scaler is not None else X[train]
        pca = decomposition.PCA(n_components=n_pca_components, random_state=random_seed).fit(scaled)
    params = {"random_state": random_seed, **dict(classifier_params or {})}
    config = {
        "use_scaling": use_scaling,
        "use_pca": use_pca,
        "n_pca_components": n_pca_components,
        "classifier_params": params,
        "split_train_data": split_train_data,
        "random_seed": random_seed,
    }
    pipeline = LinearClassifierPipeline(linear_model.LogisticRegression(**params), scaler, pca, config, task)
    pipeline.classifier.fit(pipeline.transform(X[train]), y[train])
    classes = pipeline.classes_
    metrics = _classification_metrics(
        y[train], pipeline.predict(X[train]), pipeline.predict_proba(X[train]), classes, "train"
    )
    if len(val):
        metrics.update(
            _classification_metrics(y[val], pipeline.predict(X[val]), pipeline.predict_proba(X[val]), classes, "val")
        )
    _logger.info("Trained %s classifier on %d cells, validated on %d", task, len(train), len(val))
    return pipeline, metrics


def predict_with_classifier(
    adata: Any,
    pipeline: LinearClassifierPipeline,
    task: str,
    artifact_metadata: Mapping[str, Any] | None = None,
    include_wells: Sequence[str] | None = None,
) -> Any:
    """Predict ``task`` for the cells of the included wells.

    Writes ``obs[f"predicted_{task}"]`` (NaN outside the wells),
    ``obsm[f"predicted_{task}_proba"]`` ``(N, K)`` (NaN rows outside the wells) and
    ``uns[f"predicted_{task}_classes"]``; with ``artifact_metadata`` also
    ``uns[f"classifier_{task}_artifact"|"_id"|"_version"]``.

    Parameters
    ----------
    adata : AnnData
        Embeddings.
    pipeline : LinearClassifierPipeline
        Trained pipeline.
    task : str
        Name used in the keys (e.g. ``"organelle_state_g3bp1"``).
    artifact_metadata : Mapping, optional
        ``artifact_name``, ``artifact_id`` and ``artifact_version`` of the pipeline.
    include_wells : sequence of str, optional
        Wells to predict; all when None.

    Returns
    -------
    AnnData
        ``adata``, annotated in place.
    """
    mask = (
        _well_mask(adata.obs["fov_name"], include_wells)
        if include_wells is not None
        else np.ones(adata.n_obs, dtype=bool)
    )
    classes = [str(label) for label in pipeline.classes_]
    predicted = np.full(adata.n_obs, np.nan, dtype=object)
    proba = np.full((adata.n_obs, len(classes)), np.nan)
    if mask.any():
        X = embedding_matrix(adata)[mask]
        predicted[mask] = pipeline.predict(X).astype(str)
        proba[mask] = pipeline.predict_proba(X)
    adata.obs[f"predicted_{task}"] = predicted
    adata.obsm[f"predicted_{task}_proba"] = proba
    adata.uns[f"predicted_{task}_classes"] = classes
    if artifact_metadata is not None:
        for suffix in ("artifact", "id", "version"):
            key = "artifact_name" if suffix == "artifact" else f"artifact_{suffix}"
            adata.uns[f"classifier_{task}_{suffix}"] = str(artifact_metadata[key])
    _logger.info("Predicted %s for %d of %d cells", task, int(mask.sum()), adata.n_obs)
    return adata


def save_pipeline_to_wandb(
    pipeline: LinearClassifierPipeline,
    metrics: Mapping[str, float],
    config: Mapping[str, Any],
    wandb_project: str,
    wandb_entity: str | None = None,
    tags: Sequence[str] | None = None,
) -> str:
    """Log metrics and the pipeline (as a ``model`` artifact) to Weights & Biases.

    Needs ``pip install 'viscy-utils[wandb]'`` and a W&B login.

    Parameters
    ----------
    pipeline : LinearClassifierPipeline
        Trained pipeline.
    metrics : Mapping
        Metrics from :func:`train_linear_classifier`.
    config : Mapping
        Training config (``task``, ``input_channel``, ``marker``, ``use_pca``...).
    wandb_project : str
        W&B project.
    wandb_entity : str, optional
        W&B entity.
    tags : sequence of str, optional
        Run tags.

    Returns
    -------
    str
        The model (artifact) name, see :func:`classifier_model_name`.
    """
    wandb = import_optional("wandb", extra="wandb")
    name = classifier_model_name(config)
    run = wandb.init(
        project=wandb_project,
        entity=wandb_entity,
        job_type=f"linear-classifier-{config['task']}",
        name=name,
        group=config.get("embedding_model"),
        config=dict(config),
        tags=list(tags or []),
    )
    run.summary.update(dict(metrics))
    wandb.log(dict(metrics))
    with tempfile.TemporaryDirectory() as directory:
        save_pipeline(pipeline, directory, name)
        artifact = wandb.Artifact(name, type="model", metadata={"task": config["task"], **dict(metrics)})
        artifact.add_dir(directory)
        run.log_artifact(artifact)
        artifact.wait()
    run.name = f"{name}-{artifact.version}"
    run.finish()
    return name


def load_pipeline_from_wandb(
    wandb_project: str, model_name: str, version: str = "latest", wandb_entity: str | None = None
) -> tuple[LinearClassifierPipeline, dict[str, Any], dict[str, str]]:
    """Download a pipeline artifact from Weights & Biases.

    Parameters
    ----------
    wandb_project : str
        W&B project.
    model_name : str
        Artifact name.
    version : str
        Artifact version or alias.
    wandb_entity : str, optional
        W&B entity.

    Returns
    -------
    tuple
        The pipeline, its config and ``{artifact_name, artifact_id, artifact_version}``.
    """
    wandb = import_optional("wandb", extra="wandb")
    prefix = f"{wandb_entity}/" if wandb_entity else ""
    artifact = wandb.Api().artifact(f"{prefix}{wandb_project}/{model_name}:{version}", type="model")
    pipeline, config = load_pipeline(artifact.download(), model_name)
    metadata = {"artifact_name": artifact.name, "artifact_id": artifact.id, "artifact_version": artifact.version}
    return pipeline, config, metadata


def train_from_config(config: LinearClassifierTrainConfig) -> tuple[LinearClassifierPipeline, dict[str, float]]:
    """Train from a validated config, then save locally and/or to W&B as configured.

    Parameters
    ----------
    config : LinearClassifierTrainConfig
        The training config.

    Returns
    -------
    tuple
        The pipeline and its metrics.
    """
    adata = load_and_combine_datasets(config.train_datasets, config.task)
    pipeline, metrics = train_linear_classifier(
        adata,
        config.task,
        use_scaling=config.use_scaling,
        use_pca=config.use_pca,
        n_pca_components=config.n_pca_components,
        classifier_params={
            "max_iter": config.max_iter,
            "class_weight": config.class_weight,
            "solver": config.solver,
            "random_state": config.random_seed,
        },
        split_train_data=config.split_train_data,
        random_seed=config.random_seed,
    )
    settings = config.model_dump(mode="json")
    pipeline.config.update(settings)
    if config.output_dir is not None:
        save_pipeline(pipeline, config.output_dir, classifier_model_name(settings), overwrite=config.overwrite)
    if config.wandb_project is not None:
        save_pipeline_to_wandb(
            pipeline, metrics, settings, config.wandb_project, config.wandb_entity, config.wandb_tags
        )
    return pipeline, metrics


def predict_from_config(config: LinearClassifierInferenceConfig) -> Any:
    """Load a pipeline as configured, predict and write the annotated store.

    The store goes to ``config.output_path``, or back into ``config.embeddings_path`` when
    none is set (which the config allows only with ``overwrite: true``).

    Parameters
    ----------
    config : LinearClassifierInferenceConfig
        The inference config.

    Returns
    -------
    AnnData
        The annotated embeddings.
    """
    anndata = import_optional("anndata", extra="anndata")
    if config.pipeline_dir is not None:
        pipeline, _ = load_pipeline(config.pipeline_dir, config.model_name)
        metadata = None
    else:
        pipeline, _, metadata = load_pipeline_from_wandb(
            config.wandb_project, config.model_name, config.version, config.wandb_entity
        )
    adata = anndata.read_zarr(config.embeddings_path)
    adata = predict_with_classifier(adata, pipeline, pipeline.task, metadata, config.include_wells)
    adata.write_zarr(config.output_path or config.embeddings_path)
    return adata
