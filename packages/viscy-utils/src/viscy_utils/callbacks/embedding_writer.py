"""Write predicted cell embeddings to an AnnData zarr store.

A LightningModule's ``predict_step`` returns, for every batch, a dict with ``features``
``(B, D)``, ``projections`` ``(B, P)`` and ``index``: the tracking columns of each sample,
either a list of B dicts or a dict of B-long columns.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from viscy_utils import __version__
from viscy_utils._optional import import_optional, require_installed
from viscy_utils.evaluation._embeddings import INDEX_COLUMNS

__all__ = [
    "EmbeddingWriter",
    "get_available_index_columns",
    "index_to_dataframe",
    "read_embedding_dataset",
    "write_embedding_dataset",
]

_logger = logging.getLogger(__name__)

_REDUCTIONS = {"pca": "X_pca", "umap": "X_umap", "phate": "X_phate"}


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def index_to_dataframe(index: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> pd.DataFrame:
    """Turn one batch's ``index`` into a table with one row per sample.

    Parameters
    ----------
    index : list of dict or dict of columns
        Tracking columns per sample, as datasets return them (list of dicts) or as the
        default collate makes them (dict of tensors or lists).

    Returns
    -------
    pd.DataFrame
        One row per sample.
    """
    if isinstance(index, Mapping):
        columns = {key: _to_numpy(value).reshape(-1) for key, value in index.items()}
        return pd.DataFrame(columns)
    records = [
        {key: _to_numpy(value).item() if np.ndim(value) == 0 else value for key, value in row.items()} for row in index
    ]
    return pd.DataFrame.from_records(records)


def _object_strings(obs: pd.DataFrame) -> pd.DataFrame:
    """Cast string (including pandas-3 Arrow string) columns to object for the AnnData writer."""
    for column in obs.columns:
        if pd.api.types.is_string_dtype(obs[column]) and not isinstance(obs[column].dtype, pd.CategoricalDtype):
            obs[column] = obs[column].astype(object)
    return obs


def _reduce(name: str, features: np.ndarray, kwargs: dict[str, Any]) -> np.ndarray | None:
    """Compute one reduction, logging (not raising) numerical failures."""
    from viscy_utils.evaluation.dimensionality_reduction import compute_pca, compute_phate, fit_transform_umap

    functions = {
        "pca": lambda: compute_pca(features, **kwargs)[0],
        "umap": lambda: fit_transform_umap(features, **kwargs)[1],
        "phate": lambda: compute_phate(features, **kwargs)[1],
    }
    _logger.info("Computing %s of %d embeddings", name.upper(), features.shape[0])
    try:
        return np.asarray(functions[name](), dtype=np.float32)
    except ImportError:
        raise
    except Exception as error:  # a failed projection must not lose the embeddings
        _logger.warning("Skipping %s: %s: %s", name.upper(), type(error).__name__, error)
        return None


def _check_output(output_path: Path, overwrite: bool) -> None:
    if output_path.exists() and not overwrite:
        raise FileExistsError(f"{output_path} exists; pass overwrite=True to replace it.")


def _check_reduction_dependencies(pca_kwargs: dict | None, umap_kwargs: dict | None, phate_kwargs: dict | None) -> None:
    """Fail before any work when a requested reduction's library is missing."""
    if pca_kwargs is not None or umap_kwargs is not None or phate_kwargs is not None:
        require_installed("sklearn", extra="eval")
    if umap_kwargs is not None:
        require_installed("umap", extra="eval")
    if phate_kwargs is not None:
        require_installed("phate", extra="eval")


def write_embedding_dataset(
    output_path: str | Path,
    features: np.ndarray,
    index_df: pd.DataFrame,
    projections: np.ndarray | None = None,
    umap_kwargs: dict[str, Any] | None = None,
    phate_kwargs: dict[str, Any] | None = None,
    pca_kwargs: dict[str, Any] | None = None,
    overwrite: bool = False,
    uns: Mapping[str, Any] | None = None,
    obsm: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write embeddings as an AnnData zarr store.

    The store holds ``X`` (the features), ``obs`` (``index_df`` with ``fov_name`` stripped of
    ``/``, obs names ``"0".."N-1"``, always unique), ``obsm["X_projections"]``, optional
    ``obsm["X_pca"|"X_umap"|"X_phate"]`` and ``uns`` (provenance). A reduction is computed
    when its kwargs are given (``{}`` for defaults); one that fails numerically is skipped
    with a warning. Needs ``pip install 'viscy-utils[anndata]'`` (and ``[eval]`` for
    reductions).

    Parameters
    ----------
    output_path : str or Path
        The zarr store to write.
    features : np.ndarray
        ``(N, D)`` features.
    index_df : pd.DataFrame
        ``N`` rows of tracking columns.
    projections : np.ndarray, optional
        ``(N, P)`` projections.
    umap_kwargs, phate_kwargs, pca_kwargs : dict, optional
        Arguments of :func:`~viscy_utils.evaluation.dimensionality_reduction.fit_transform_umap`,
        :func:`~viscy_utils.evaluation.dimensionality_reduction.compute_phate` and
        :func:`~viscy_utils.evaluation.dimensionality_reduction.compute_pca`; None skips it.
    overwrite : bool
        Replace an existing store.
    uns : Mapping, optional
        Unstructured metadata to store (e.g. provenance).
    obsm : Mapping, optional
        Further ``(N, ...)`` arrays to store in ``obsm``.

    Raises
    ------
    FileExistsError
        If ``output_path`` exists and ``overwrite`` is False.
    ValueError
        If the row counts of features, index and projections differ.
    """
    anndata = import_optional("anndata", extra="anndata")
    output_path = Path(output_path)
    _check_output(output_path, overwrite)
    _check_reduction_dependencies(pca_kwargs, umap_kwargs, phate_kwargs)
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}.")
    n_samples = features.shape[0]
    if len(index_df) != n_samples:
        raise ValueError(f"index_df has {len(index_df)} rows but features has {n_samples}.")
    if projections is not None and len(projections) != n_samples:
        raise ValueError(f"projections has {len(projections)} rows but features has {n_samples}.")
    obs = _object_strings(index_df.reset_index(drop=True).copy())
    if "fov_name" in obs:
        obs["fov_name"] = obs["fov_name"].astype(str).str.strip("/").astype(object)
    obs.index = pd.Index([str(i) for i in range(n_samples)])
    adata = anndata.AnnData(X=features, obs=obs)
    if projections is not None:
        adata.obsm["X_projections"] = np.asarray(projections)
    for name, kwargs in (("pca", pca_kwargs), ("umap", umap_kwargs), ("phate", phate_kwargs)):
        if kwargs is None:
            continue
        reduced = _reduce(name, features, dict(kwargs))
        if reduced is not None:
            adata.obsm[_REDUCTIONS[name]] = reduced
    for key, value in (obsm or {}).items():
        adata.obsm[key] = np.asarray(value)
    adata.uns.update(dict(uns or {}))
    if hasattr(anndata.settings, "allow_write_nullable_strings"):
        anndata.settings.allow_write_nullable_strings = True
    if output_path.exists():
        shutil.rmtree(output_path)
    with warnings.catch_warnings():
        # anndata warns at every write under zarr 2 (which iohub 0.2 pins on Python 3.11), where v2 is the
        # only format there is: nothing the user could act on
        warnings.filterwarnings(
            "ignore", message="Writing zarr v2 data will no longer be the default", category=UserWarning
        )
        adata.write_zarr(output_path)
    _logger.info("Wrote %d embeddings to %s", n_samples, output_path)


def _provenance(trainer: Trainer, pl_module: LightningModule, embedding_key: str) -> dict[str, Any]:
    """Where the embeddings come from: model class, data and tracks paths, package version."""
    provenance = {
        "model": f"{type(pl_module).__module__}.{type(pl_module).__qualname__}",
        "embedding_key": embedding_key,
        "viscy_utils_version": __version__,
    }
    datamodule = getattr(trainer, "datamodule", None)
    for attribute in ("data_path", "tracks_path"):
        value = getattr(datamodule, attribute, None)
        if value is not None:
            provenance[attribute] = str(value)
    return provenance


class EmbeddingWriter(BasePredictionWriter):
    """Collect ``predict_step`` outputs and write them as an AnnData zarr store at epoch end.

    Parameters
    ----------
    output_path : Path
        The zarr store to write.
    write_interval : {"epoch"}
        Only ``"epoch"``: all predictions of the run go into one store.
    umap_kwargs, phate_kwargs, pca_kwargs : dict, optional
        Compute that reduction into ``obsm`` with these arguments (``{}`` for defaults).
    overwrite : bool
        Replace an existing store; otherwise an existing ``output_path`` stops the run
        before any prediction.
    embedding_key : {"features", "projections"}
        Which output goes into ``X``; the other one goes to ``obsm["X_projections"]``
        (projections) or ``obsm["X_backbone"]`` (features).

    Raises
    ------
    ValueError
        For an unsupported ``write_interval`` or ``embedding_key``.
    ImportError
        If anndata, or the library of a requested reduction, is missing.
    """

    def __init__(
        self,
        output_path: Path,
        write_interval: Literal["batch", "epoch", "batch_and_epoch"] = "epoch",
        umap_kwargs: dict[str, Any] | None = None,
        phate_kwargs: dict[str, Any] | None = None,
        pca_kwargs: dict[str, Any] | None = None,
        overwrite: bool = False,
        embedding_key: Literal["features", "projections"] = "features",
    ) -> None:
        if write_interval != "epoch":
            raise ValueError(
                f"EmbeddingWriter writes one store per prediction run: write_interval must be 'epoch', "
                f"got {write_interval!r}."
            )
        if embedding_key not in ("features", "projections"):
            raise ValueError(f"embedding_key must be 'features' or 'projections', got {embedding_key!r}.")
        super().__init__(write_interval)
        require_installed("anndata", extra="anndata")
        _check_reduction_dependencies(pca_kwargs, umap_kwargs, phate_kwargs)
        self.output_path = Path(output_path)
        self.umap_kwargs = umap_kwargs
        self.phate_kwargs = phate_kwargs
        self.pca_kwargs = pca_kwargs
        self.overwrite = overwrite
        self.embedding_key = embedding_key

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Refuse to start when the store exists and ``overwrite`` is False."""
        _check_output(self.output_path, self.overwrite)

    def write_on_epoch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        """Concatenate the run's predictions (gathered from all ranks) and write them on rank 0."""
        batches = _flatten_predictions(predictions)
        if trainer.world_size > 1:
            batches = _gather_batches(batches, trainer.world_size)
        if not trainer.is_global_zero:
            return
        if not batches:
            raise RuntimeError("The prediction run produced no batches to write.")
        features = np.concatenate([_to_numpy(batch["features"]) for batch in batches])
        projections = np.concatenate([_to_numpy(batch["projections"]) for batch in batches])
        index_df = pd.concat([index_to_dataframe(batch["index"]) for batch in batches], ignore_index=True)
        if trainer.world_size > 1:
            duplicated = index_df.duplicated().to_numpy()
            if duplicated.any():
                _logger.warning("Dropping %d samples predicted twice by padded DDP sampling.", int(duplicated.sum()))
                features, projections, index_df = features[~duplicated], projections[~duplicated], index_df[~duplicated]
        if self.embedding_key == "features":
            x, projections_obsm, extra_obsm = features, projections, None
        else:
            x, projections_obsm, extra_obsm = projections, None, {"X_backbone": features}
        write_embedding_dataset(
            self.output_path,
            x,
            index_df,
            projections=projections_obsm,
            umap_kwargs=self.umap_kwargs,
            phate_kwargs=self.phate_kwargs,
            pca_kwargs=self.pca_kwargs,
            overwrite=self.overwrite,
            uns=_provenance(trainer, pl_module, self.embedding_key),
            obsm=extra_obsm,
        )


def _flatten_predictions(predictions: Sequence[Any]) -> list[Mapping[str, Any]]:
    """Predictions are a list of batch dicts, or one such list per dataloader."""
    if predictions and isinstance(predictions[0], list):
        return [batch for dataloader in predictions for batch in dataloader]
    return list(predictions)


def _gather_batches(batches: list[Mapping[str, Any]], world_size: int) -> list[Mapping[str, Any]]:
    """Collect every rank's batches on all ranks (CPU copies)."""
    local = [
        {"features": _to_numpy(b["features"]), "projections": _to_numpy(b["projections"]), "index": b["index"]}
        for b in batches
    ]
    gathered: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(gathered, local)
    return [batch for rank_batches in gathered for batch in rank_batches]


def get_available_index_columns(dataset: Any, dataset_path: str | Path | None = None) -> list[str]:
    """Return the tracking-index columns present in a legacy xarray embedding dataset.

    Parameters
    ----------
    dataset : xarray.Dataset
        Legacy embeddings.
    dataset_path : str or Path, optional
        Used in the warning message.

    Returns
    -------
    list of str
        The :data:`INDEX_COLUMNS` found among the coordinates, in schema order. Missing
        ones are named in a warning.
    """
    available = [column for column in INDEX_COLUMNS if column in dataset.coords]
    missing = [column for column in INDEX_COLUMNS if column not in available]
    if missing:
        _logger.warning(
            "Embeddings %s lack index columns %s (legacy dataset format).", dataset_path or "dataset", missing
        )
    return available


def read_embedding_dataset(path: str | Path) -> Any:
    """Open legacy xarray embeddings (zarr) indexed by their tracking columns.

    Needs ``pip install 'viscy-utils[anndata]'`` (xarray).

    Parameters
    ----------
    path : str or Path
        The xarray zarr store.

    Returns
    -------
    xarray.Dataset
        With a ``sample`` MultiIndex over the available index columns.
    """
    xarray = import_optional("xarray", extra="anndata")
    dataset = xarray.open_zarr(path)
    return dataset.set_index(sample=get_available_index_columns(dataset, path))
