"""``VisCyTrainer``: a Lightning ``Trainer`` with the extra ``viscy`` subcommands."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ProgressBar

from viscy_utils.callbacks.progress_log import LogProgress
from viscy_utils.precompute import Divisor, Subtrahend
from viscy_utils.rechunk import Compression, StorageDtype

__all__ = ["VisCyTrainer"]

_logger = logging.getLogger(__name__)

ONNX_OPSET_VERSION = 18
"""ONNX opset of exported models."""

ONNX_DYNAMIC_AXES = {0: "batch_size", 1: "channels", 3: "num_rows", 4: "num_cols"}
"""Axes of ``(B, C, Z, Y, X)`` that may change size in an exported model; depth stays static."""


class VisCyTrainer(Trainer):
    """Lightning ``Trainer`` with VisCy's extra commands.

    The commands are ``preprocess``, ``export``, ``precompute``, ``rechunk`` and
    ``convert_to_anndata``. Their ``model`` and ``datamodule`` arguments are placeholders that
    :class:`~viscy_utils.cli.VisCyCLI` fills in for every subcommand; only ``export`` uses
    the model.

    When stdout is not a terminal (a log file, a pipe, SLURM output), the progress bar is
    :class:`~viscy_utils.callbacks.LogProgress`, which prints whole lines, unless
    ``enable_progress_bar`` is False or ``callbacks`` has a progress bar of its own. On a
    terminal Lightning's default bar stays. Other arguments are ``lightning.pytorch.Trainer``'s.

    Parameters
    ----------
    callbacks : list of Callback or Callback, optional
        Callbacks to add to Lightning's defaults.
    enable_progress_bar : bool, optional
        Whether to show progress (default True).
    **kwargs : Any
        The other arguments of ``lightning.pytorch.Trainer``.
    """

    def __init__(
        self,
        *,
        callbacks: list[Callback] | Callback | None = None,
        enable_progress_bar: bool | None = None,
        **kwargs: Any,
    ) -> None:
        if enable_progress_bar is not False and not sys.stdout.isatty():
            given = [callbacks] if isinstance(callbacks, Callback) else list(callbacks or [])
            if not any(isinstance(callback, ProgressBar) for callback in given):
                callbacks = [*given, LogProgress()]
        super().__init__(callbacks=callbacks, enable_progress_bar=enable_progress_bar, **kwargs)

    def preprocess(
        self,
        data_path: Path,
        channel_names: Literal[-1] | list[str] | str = -1,
        num_workers: int = 1,
        block_size: int = 32,
        model: LightningModule | None = None,
        datamodule: LightningDataModule | None = None,
    ) -> None:
        """Write normalization statistics into an HCS OME-Zarr plate.

        Parameters
        ----------
        data_path : Path
            The plate, opened for writing.
        channel_names : str, list of str or -1
            Channel or channels to process; ``-1`` for all.
        num_workers : int
            Number of FOVs read in parallel.
        block_size : int
            Sampling step in Y and X, in pixels.
        model : LightningModule, optional
            Ignored.
        datamodule : LightningDataModule, optional
            Ignored.

        Raises
        ------
        ValueError
            If a channel is not in the plate (the message lists the channels present).
        """
        from viscy_data.ome_compat import open_ome_zarr
        from viscy_utils.meta_utils import generate_normalization_metadata

        if _is_configured(model):
            _logger.warning("preprocess ignores the configured model %s.", type(model).__name__)
        if channel_names == -1:
            channel_ids: int | list[int] = -1
        else:
            with open_ome_zarr(data_path, layout="hcs", mode="r") as plate:
                present = list(plate.channel_names)
            names = _name_list(channel_names)
            missing = [name for name in names if name not in present]
            if missing:
                raise ValueError(f"Channels {missing} not found in {data_path}; channels present: {present}.")
            channel_ids = [present.index(name) for name in names]
        generate_normalization_metadata(
            zarr_dir=data_path, num_workers=num_workers, channel_ids=channel_ids, grid_spacing=block_size
        )

    def export(
        self,
        model: LightningModule,
        export_path: Path,
        ckpt_path: Path,
        format: str = "onnx",
        overwrite: bool = False,
        datamodule: LightningDataModule | None = None,
    ) -> None:
        """Export a model's checkpoint to ONNX.

        The checkpoint's ``state_dict`` is loaded strictly; the model's
        ``example_input_array`` (``(B, C, Z, Y, X)``) defines the input. Batch, channel, Y and
        X axes are dynamic; depth is static. Needs ``pip install 'viscy-utils[export]'``.

        Parameters
        ----------
        model : LightningModule
            The configured model; it must set ``example_input_array``.
        export_path : Path
            The ``.onnx`` file to write.
        ckpt_path : Path
            Lightning checkpoint with a ``state_dict``.
        format : str
            Export format; only ``"onnx"`` (case-insensitive).
        overwrite : bool
            Replace an existing ``export_path``.
        datamodule : LightningDataModule, optional
            Ignored.

        Raises
        ------
        NotImplementedError
            For any format other than ONNX.
        FileExistsError
            If ``export_path`` exists and ``overwrite`` is False.
        ValueError
            If the model has no ``example_input_array`` or the checkpoint has no ``state_dict``.
        """
        from lightning.pytorch.utilities.compile import to_uncompiled

        from viscy_utils._optional import import_optional

        if format.lower() != "onnx":
            raise NotImplementedError(f"Export format {format!r} is not supported; supported formats: ['onnx'].")
        import_optional("onnx", extra="export")
        export_path = Path(export_path)
        if export_path.exists() and not overwrite:
            raise FileExistsError(f"{export_path} exists; pass overwrite=True to replace it.")
        if not isinstance(model, LightningModule):  # torch.compile's wrapper of one
            model = to_uncompiled(model)
        if model.example_input_array is None:
            raise ValueError(f"{type(model).__name__} sets no example_input_array, which defines the ONNX input.")
        checkpoint = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        if "state_dict" not in checkpoint:
            raise ValueError(f"{ckpt_path} has no 'state_dict'; keys found: {sorted(checkpoint)}.")
        model.load_state_dict(checkpoint["state_dict"], strict=True)
        model.eval()
        dynamic_axes = {"input": ONNX_DYNAMIC_AXES, "output": ONNX_DYNAMIC_AXES}
        model.to_onnx(
            export_path,
            input_sample=model.example_input_array,
            export_params=True,
            opset_version=ONNX_OPSET_VERSION,
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes=dynamic_axes,
        )
        _logger.info("Exported %s to %s", type(model).__name__, export_path)

    def precompute(
        self,
        data_path: Path,
        output_path: Path,
        channel_names: list[str] | str,
        subtrahends: list[Subtrahend],
        divisors: list[Divisor],
        image_array_key: str = "0",
        include_wells: list[str] | str | None = None,
        exclude_fovs: list[str] | str | None = None,
        overwrite: bool = False,
        model: LightningModule | None = None,
        datamodule: LightningDataModule | None = None,
    ) -> None:
        """Save normalized float16 image stacks of selected channels.

        See :func:`viscy_utils.precompute.precompute_array`.

        Parameters
        ----------
        data_path : Path
            HCS OME-Zarr plate.
        output_path : Path
            Directory to write.
        channel_names : str or list of str
            Channel or channels to keep.
        subtrahends : list of {"mean"} or float
            Per channel: ``"mean"`` or a percentile to subtract.
        divisors : list of {"std"} or (float, float)
            Per channel: ``"std"`` or a (low, high) percentile pair.
        image_array_key : str
            Array inside each position.
        include_wells : str or list of str, optional
            Well or wells to keep (``"A/1"``).
        exclude_fovs : str or list of str, optional
            FOV or FOVs to drop (``"A/1/0"``).
        overwrite : bool
            Replace an existing ``output_path``.
        model : LightningModule, optional
            Ignored.
        datamodule : LightningDataModule, optional
            Ignored.
        """
        from viscy_utils.precompute import precompute_array

        precompute_array(
            data_path=data_path,
            output_path=output_path,
            channel_names=_name_list(channel_names),
            subtrahends=subtrahends,
            divisors=divisors,
            image_array_key=image_array_key,
            include_wells=None if include_wells is None else _name_list(include_wells),
            exclude_fovs=None if exclude_fovs is None else _name_list(exclude_fovs),
            overwrite=overwrite,
        )

    def rechunk(
        self,
        data_path: Path,
        output_path: Path,
        chunk_yx: int = 128,
        dtype: StorageDtype | None = None,
        compression: Compression = "lz4",
        shard: bool = False,
        overwrite: bool = False,
        model: LightningModule | None = None,
        datamodule: LightningDataModule | None = None,
    ) -> None:
        """Write a training copy of an HCS plate with chunks sized for patch reads.

        See :func:`viscy_utils.rechunk.rechunk_plate`.

        Parameters
        ----------
        data_path : Path
            HCS OME-Zarr plate to copy; it is only read.
        output_path : Path
            The plate to write.
        chunk_yx : int
            Chunk height and width in pixels; each chunk holds all Z of one time point and channel.
        dtype : {"uint16", "float16"}, optional
            Storage type; None keeps the source's.
        compression : {"none", "lz4", "zstd"}
            Blosc compression of the chunks.
        shard : bool
            Store each Z stack as one shard of small chunks (zarr format 3 plates only).
        overwrite : bool
            Replace an existing ``output_path``.
        model : LightningModule, optional
            Ignored.
        datamodule : LightningDataModule, optional
            Ignored.
        """
        from viscy_utils.rechunk import rechunk_plate

        rechunk_plate(
            data_path=data_path,
            output_path=output_path,
            chunk_yx=chunk_yx,
            dtype=dtype,
            compression=compression,
            shard=shard,
            overwrite=overwrite,
        )

    def convert_to_anndata(
        self,
        embeddings_path: Path,
        output_anndata_path: Path,
        overwrite: bool = False,
        model: LightningModule | None = None,
        datamodule: LightningDataModule | None = None,
    ) -> None:
        """Convert legacy xarray embeddings to an AnnData zarr store.

        Parameters
        ----------
        embeddings_path : Path
            Legacy xarray embeddings (zarr).
        output_anndata_path : Path
            AnnData zarr store to write.
        overwrite : bool
            Replace an existing store.
        model : LightningModule, optional
            Ignored.
        datamodule : LightningDataModule, optional
            Ignored.
        """
        from viscy_utils.evaluation.annotation import convert

        convert(
            embeddings_ds=embeddings_path,
            output_path=output_anndata_path,
            overwrite=overwrite,
            return_anndata=False,
        )


def _name_list(names: str | Sequence[str]) -> list[str]:
    """One name (``"GFP"``, as the command line gives it) or several, as a list."""
    return [names] if isinstance(names, str) else list(names)


def _is_configured(model: LightningModule | None) -> bool:
    """Whether a real model (not the bare placeholder ``LightningModule``) was configured."""
    return model is not None and type(model) is not LightningModule
