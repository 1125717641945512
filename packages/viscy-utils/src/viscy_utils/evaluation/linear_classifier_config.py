"""Validated configs of linear-classifier training and inference (``pip install 'viscy-utils[eval]'``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from viscy_utils._optional import import_optional

pydantic = import_optional("pydantic", extra="eval")

__all__ = ["LinearClassifierInferenceConfig", "LinearClassifierTrainConfig"]

TaskName = Literal["infection_state", "organelle_state", "cell_division_state", "cell_death_state"]
InputChannel = Literal["phase", "sensor", "organelle"]


class LinearClassifierTrainConfig(pydantic.BaseModel):
    """What to train a linear classifier on and where to keep it.

    The pipeline is saved to ``output_dir`` and/or logged to W&B when ``wandb_project`` is
    set; at least one of them is required.

    Attributes
    ----------
    task : str
        Annotation column to predict.
    input_channel : str
        Channel the embeddings were computed from.
    marker : str, optional
        Organelle marker, appended to the model name.
    embedding_model : str
        Name of the model that produced the embeddings.
    train_datasets : list of dict
        Each with ``embeddings`` (AnnData zarr), ``annotations`` (CSV) and optional
        ``include_wells``.
    use_scaling, use_pca, n_pca_components
        Preprocessing, fitted on the training split only.
    max_iter, class_weight, solver
        ``LogisticRegression`` settings.
    split_train_data : float
        Training fraction in ``(0, 1]``; ``1.0`` trains on everything (no validation
        metrics).
    random_seed : int
        Seed of the split and the classifier.
    output_dir : Path, optional
        Directory to save the pipeline to.
    overwrite : bool
        Replace a pipeline of the same name in ``output_dir``; without it, such a pipeline
        is refused when the config is read, before any training.
    wandb_project, wandb_entity, wandb_tags
        W&B logging, used only when ``wandb_project`` is set.
    """

    model_config = pydantic.ConfigDict(extra="forbid")

    task: TaskName
    input_channel: InputChannel
    marker: str | None = None
    embedding_model: str = pydantic.Field(min_length=1)
    train_datasets: list[dict[str, Any]] = pydantic.Field(min_length=1)
    use_scaling: bool = True
    use_pca: bool = False
    n_pca_components: int | None = None
    max_iter: int = pydantic.Field(default=1000, gt=0)
    class_weight: Literal["balanced"] | None = "balanced"
    solver: str = "liblinear"
    split_train_data: float = pydantic.Field(default=0.8, gt=0, le=1)
    random_seed: int = 42
    output_dir: Path | None = None
    overwrite: bool = False
    wandb_project: str | None = pydantic.Field(default=None, min_length=1)
    wandb_entity: str | None = None
    wandb_tags: list[str] = pydantic.Field(default_factory=list)

    @pydantic.model_validator(mode="after")
    def _check(self) -> LinearClassifierTrainConfig:
        if self.use_pca and (self.n_pca_components is None or self.n_pca_components <= 0):
            raise ValueError(f"use_pca=True needs a positive n_pca_components, got {self.n_pca_components}.")
        if self.output_dir is None and self.wandb_project is None:
            raise ValueError("Set output_dir (local directory) and/or wandb_project to keep the trained pipeline.")
        for i, dataset in enumerate(self.train_datasets):
            for key in ("embeddings", "annotations"):
                if key not in dataset:
                    raise ValueError(f"train_datasets[{i}] needs {key!r}; keys given: {sorted(dataset)}.")
                if not Path(dataset[key]).exists():
                    raise ValueError(f"train_datasets[{i}].{key} does not exist: {dataset[key]}.")
        if self.output_dir is not None and not self.overwrite:
            from viscy_utils.evaluation.linear_classifier import classifier_model_name

            saved = self.output_dir / f"{classifier_model_name(self.model_dump())}.joblib"
            if saved.exists():
                raise ValueError(f"A pipeline is already saved as {saved}; set overwrite: true to replace it.")
        return self


class LinearClassifierInferenceConfig(pydantic.BaseModel):
    """Which trained pipeline to apply to which embeddings.

    The pipeline comes from ``pipeline_dir`` (local) or from the W&B artifact
    ``wandb_project``/``model_name``:``version``; exactly one source is required.

    Attributes
    ----------
    model_name : str, optional
        Pipeline name (W&B artifact name, or the file stem in ``pipeline_dir``).
    version : str
        W&B artifact version.
    pipeline_dir : Path, optional
        Local directory the pipeline was saved to.
    wandb_project, wandb_entity
        W&B source.
    embeddings_path : Path
        AnnData zarr store to annotate (must exist).
    output_path : Path, optional
        Where to write the annotated store; None writes into ``embeddings_path``, which
        needs ``overwrite``.
    include_wells : list of str, optional
        Only predict cells of these wells.
    overwrite : bool
        Allow replacing an existing store: ``output_path``, or ``embeddings_path`` itself
        when no ``output_path`` is given.
    """

    model_config = pydantic.ConfigDict(extra="forbid")

    model_name: str | None = None
    version: str = "latest"
    pipeline_dir: Path | None = None
    wandb_project: str | None = pydantic.Field(default=None, min_length=1)
    wandb_entity: str | None = None
    embeddings_path: Path
    output_path: Path | None = None
    include_wells: list[str] | None = None
    overwrite: bool = False

    @pydantic.model_validator(mode="after")
    def _check(self) -> LinearClassifierInferenceConfig:
        if not self.embeddings_path.exists():
            raise ValueError(f"embeddings_path does not exist: {self.embeddings_path}.")
        if (self.pipeline_dir is None) == (self.wandb_project is None):
            raise ValueError("Give exactly one pipeline source: pipeline_dir (local) or wandb_project (W&B).")
        if self.wandb_project is not None and not self.model_name:
            raise ValueError("Loading from W&B needs model_name.")
        if self.output_path is None and not self.overwrite:
            raise ValueError(
                f"No output_path is set, so the predictions would be written into embeddings_path "
                f"{self.embeddings_path}; set overwrite: true to write them in place, or output_path "
                "to write a new store."
            )
        if self.output_path is not None and self.output_path.exists() and not self.overwrite:
            raise ValueError(f"output_path {self.output_path} exists; set overwrite: true to replace it.")
        return self
