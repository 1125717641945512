"""A training copy of an HCS plate in a read-friendly layout (``viscy rechunk``).

Plates are often stored with one chunk per ``(Z, Y, X)`` stack, so that every patch read
decodes the whole image: on a 768 x 768 image a 384 x 384 patch costs 4 times its bytes, on
a 2048 x 2048 field of view about 28 times. :func:`rechunk_plate` writes a copy whose chunks
are ``(1, 1, Z, chunk_yx, chunk_yx)``, lightly compressed (or not at all), optionally as
16-bit values, and, for zarr format 3 (OME-Zarr 0.5), optionally in shards of one full stack
each (one file per stack, small chunks inside). Channel names, every attribute of the plate,
its wells and positions (OME metadata with scales and transforms, normalization statistics)
and the row/column/FOV layout are kept; readers open the copy unchanged.

The arrays are written with tensorstore (the ``[triplet]`` extra of viscy-data, which the
training readers need too).
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from viscy_data._optional import import_optional
from viscy_data.ome_compat import (
    SUPPORTED_OME_VERSIONS,
    array_zarr_format,
    open_ome_zarr,
    open_tensorstore,
    tensorstore_context,
)
from viscy_data.read_errors import naming_read_errors
from viscy_utils.progress import ProgressMeter, format_count, format_duration, format_rate

if TYPE_CHECKING:
    from iohub.ngff import ImageArray, Plate
    from iohub.ngff.nodes import NGFFNode

__all__ = ["COMPRESSIONS", "DTYPES", "RechunkReport", "rechunk_plate"]

_logger = logging.getLogger(__name__)

Compression = Literal["none", "lz4", "zstd"]
StorageDtype = Literal["uint16", "float16"]

COMPRESSIONS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "lz4": {"cname": "lz4", "clevel": 1, "shuffle": 1},
    "zstd": {"cname": "zstd", "clevel": 1, "shuffle": 2},
}
"""Blosc settings of each ``compression``: LZ4 with byte shuffle decodes fastest; zstd with bit
shuffle is what iohub writes by default (smaller, slower to decode); ``"none"`` stores raw bytes."""

DTYPES = ("uint16", "float16")
"""The 16-bit storage types :func:`rechunk_plate` converts to (None keeps the source's)."""

_BLOSC_SHUFFLE_NAMES = {0: "noshuffle", 1: "shuffle", 2: "bitshuffle"}
"""Blosc shuffle codes of zarr format 2 and their names in zarr format 3."""

_LITTLE_ENDIAN_BYTES = {"name": "bytes", "configuration": {"endian": "little"}}


@dataclass(frozen=True)
class RechunkReport:
    """What :func:`rechunk_plate` wrote.

    Attributes
    ----------
    output_path : Path
        The new plate.
    n_fovs : int
        Positions copied.
    chunks : tuple of int
        Chunk shape of each position's array ``"0"`` (the inner chunks when sharded).
    shards : tuple of int or None
        Shard shape of array ``"0"``; None when not sharded.
    dtype : str
        Stored data type of array ``"0"``.
    compression : str
        A key of :data:`COMPRESSIONS`.
    bytes_copied : int
        Uncompressed bytes read from the source.
    seconds : float
        Wall time of the copy.
    max_abs_error : float
        Largest ``|stored - source|`` over all values: 0 unless stored as float16.
    max_rel_error : float
        Largest ``|stored - source| / max(|source|, 2**-14)`` (``2**-14``: float16's smallest
        normal number): 0 unless stored as float16, then at most ``2**-11``.
    """

    output_path: Path
    n_fovs: int
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    dtype: str
    compression: str
    bytes_copied: int
    seconds: float
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0


def _validate_options(chunk_yx: int, dtype: str | None, compression: str) -> None:
    """Fail fast on a bad chunk size, storage type or compression, naming the valid choices."""
    if isinstance(chunk_yx, bool) or not isinstance(chunk_yx, int) or chunk_yx < 1:
        raise ValueError(f"chunk_yx must be a positive number of pixels (e.g. 128), got {chunk_yx!r}.")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not supported; choose one of {[*DTYPES, None]} (None: the source's).")
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression {compression!r} is not supported; choose one of {list(COMPRESSIONS)}.")


def _claim_output(source: Path, output: Path, overwrite: bool) -> None:
    """Refuse an output that overlaps the source, or that exists unless ``overwrite``; remove it with ``overwrite``."""
    resolved_source, resolved_output = source.resolve(), output.resolve()
    if resolved_output == resolved_source or resolved_source in resolved_output.parents:
        raise ValueError(f"output_path {output} lies inside the source plate {source}; choose a path outside it.")
    if resolved_output in resolved_source.parents:
        raise ValueError(f"output_path {output} contains the source plate {source}; choose another path.")
    if output.exists():
        if not overwrite:
            raise FileExistsError(f"{output} exists; pass overwrite=True to replace it.")
        if output.is_dir():
            shutil.rmtree(output)
        else:
            output.unlink()


def _open_source_plate(data_path: Path) -> Plate:
    """Open ``data_path`` read-only, checking that it is an HCS plate with positions."""
    from iohub.ngff import Plate

    try:
        node = open_ome_zarr(data_path, layout="auto", mode="r")
    except Exception as error:  # iohub's errors for a non-OME store differ between its generations
        raise ValueError(f"{data_path} is not an OME-Zarr store: {error}") from error
    if not isinstance(node, Plate):
        node.close()
        raise ValueError(f"{data_path} is an OME-Zarr {type(node).__name__}, not an HCS plate (row/column/FOV).")
    if not any(True for _ in node.positions()):
        node.close()
        raise ValueError(f"The plate {data_path} has no positions.")
    return node


def _check_shardable(data_path: Path, image: ImageArray) -> None:
    """Raise unless ``image`` is in zarr format 3, the only one with shards."""
    if array_zarr_format(image) == 3:
        return
    if "0.5" not in SUPPORTED_OME_VERSIONS:
        raise ValueError(
            "shard=True needs zarr format 3 (OME-Zarr 0.5), which needs iohub >= 0.3 (Python >= 3.12); "
            "this environment has iohub 0.2: rechunk without shards."
        )
    raise ValueError(
        f"shard=True needs a plate in zarr format 3 (OME-Zarr 0.5); {data_path} is OME-Zarr 0.4 "
        "(zarr format 2), which has no shards: rechunk without shards."
    )


def _check_storable(data_path: Path, source_dtype: np.dtype, dtype: str | None) -> None:
    """Raise when the source's values cannot be stored as ``dtype`` at all."""
    if dtype is not None and source_dtype.kind not in "uif":
        raise ValueError(f"{data_path} stores {source_dtype} values, which cannot be stored as {dtype}.")


def _chunking(shape: tuple[int, ...], chunk_yx: int, shard: bool) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """Chunks ``(1, 1, Z, cy, cx)`` of a ``(T, C, Z, Y, X)`` array (YX clamped to the image) and shards of a stack.

    A shard's YX is rounded up to a multiple of the chunk (the last shard row and column stick
    out of the array, as edge chunks do).
    """
    chunk_y, chunk_x = min(chunk_yx, shape[-2]), min(chunk_yx, shape[-1])
    chunks = (1, 1, shape[-3], chunk_y, chunk_x)
    if not shard:
        return chunks, None
    shards = (*chunks[:-2], math.ceil(shape[-2] / chunk_y) * chunk_y, math.ceil(shape[-1] / chunk_x) * chunk_x)
    return chunks, shards


def _target_metadata(
    source_metadata: dict[str, Any],
    chunks: tuple[int, ...],
    shards: tuple[int, ...] | None,
    dtype: np.dtype,
    compression: str,
) -> dict[str, Any]:
    """Zarr metadata of the copy: the source's (format, shape, dimension names...) with new chunks, type and codecs."""
    blosc = COMPRESSIONS[compression]
    metadata = dict(source_metadata)
    metadata["fill_value"] = 0
    if metadata["zarr_format"] == 2:
        metadata.update(
            chunks=list(chunks),
            dtype=dtype.str,
            compressor=None if blosc is None else {"id": "blosc", "blocksize": 0, **blosc},
            filters=None,
        )
        return metadata
    codecs: list[dict[str, Any]] = [_LITTLE_ENDIAN_BYTES]
    if blosc is not None:
        configuration = {**blosc, "shuffle": _BLOSC_SHUFFLE_NAMES[blosc["shuffle"]]}
        codecs.append({"name": "blosc", "configuration": {**configuration, "typesize": dtype.itemsize, "blocksize": 0}})
    if shards is not None:
        sharding = {
            "chunk_shape": list(chunks),
            "codecs": codecs,
            "index_codecs": [_LITTLE_ENDIAN_BYTES, {"name": "crc32c"}],
            "index_location": "end",
        }
        codecs = [{"name": "sharding_indexed", "configuration": sharding}]
    metadata.update(
        data_type=dtype.name,
        chunk_grid={"name": "regular", "configuration": {"chunk_shape": list(shards or chunks)}},
        codecs=codecs,
    )
    return metadata


class _Converter:
    """Converts blocks to the storage type, checking that they fit and tracking float16's rounding error.

    Parameters
    ----------
    dtype : str or None
        A member of :data:`DTYPES`, or None to keep the source's type.
    """

    def __init__(self, dtype: str | None) -> None:
        self.dtype = dtype
        self.max_abs_error = 0.0
        self.max_rel_error = 0.0

    def __call__(self, block: np.ndarray, where: str) -> np.ndarray:
        """Return ``block`` as the storage type; ``where`` names it in errors."""
        if self.dtype is None:
            return block
        if self.dtype == "uint16":
            return self._to_uint16(block, where)
        return self._to_float16(block, where)

    @staticmethod
    def _to_uint16(block: np.ndarray, where: str) -> np.ndarray:
        if np.can_cast(block.dtype, np.uint16):
            return block.astype(np.uint16)
        if block.dtype.kind == "f":
            fractional = block != np.rint(block)  # NaN is not an integer either
            if fractional.any():
                example = block[fractional].flat[0]
                raise ValueError(
                    f"Cannot store {where} as uint16: it holds non-integer values (e.g. {example}); "
                    "store float16 or keep the source's type."
                )
        low, high = block.min(), block.max()
        limit = np.iinfo(np.uint16)
        if low < limit.min or high > limit.max:
            raise ValueError(
                f"Cannot store {where} as uint16: its values span [{low}, {high}], outside [0, {limit.max}]; "
                "store float16 or keep the source's type."
            )
        return block.astype(np.uint16)

    def _to_float16(self, block: np.ndarray, where: str) -> np.ndarray:
        with np.errstate(over="ignore"):  # checked below
            converted = block.astype(np.float16)
        overflow = np.isinf(converted) & np.isfinite(block)
        if overflow.any():
            raise ValueError(
                f"Cannot store {where} as float16: it holds values beyond float16's range of "
                f"+-{float(np.finfo(np.float16).max):g} (e.g. {block[overflow].flat[0]}); store uint16 "
                "(integer values) or keep the source's type."
            )
        exact = np.result_type(block.dtype, np.float32)  # float32 holds the error of float32 and 16-bit values exactly
        error = np.abs(converted.astype(exact) - block.astype(exact, copy=False))
        scale = np.maximum(np.abs(block, dtype=exact), np.finfo(np.float16).smallest_normal)
        finite = np.isfinite(error)
        self.max_abs_error = max(self.max_abs_error, float(np.max(error, where=finite, initial=0.0)))
        self.max_rel_error = max(self.max_rel_error, float(np.max(error / scale, where=finite, initial=0.0)))
        return converted


def _copy_array(
    ts: Any,
    context: Any,
    source: ImageArray,
    target_dir: Path,
    where: str,
    chunk_yx: int,
    converter: _Converter,
    compression: str,
    shard: bool,
) -> tuple[tuple[int, ...], tuple[int, ...] | None, int]:
    """Copy one ``(T, C, Z, Y, X)`` array stack by stack (each read once); return its chunks, shards and bytes read."""
    with naming_read_errors(source):
        reader = open_tensorstore(source, context=context)
    shape = tuple(int(n) for n in reader.shape)
    chunks, shards = _chunking(shape, chunk_yx, shard)
    stored = np.dtype(converter.dtype or reader.dtype.numpy_dtype)
    metadata = _target_metadata(reader.spec().to_json()["metadata"], chunks, shards, stored, compression)
    spec = {
        "driver": "zarr3" if metadata["zarr_format"] == 3 else "zarr",
        "kvstore": {"driver": "file", "path": str(target_dir)},
        "metadata": metadata,
    }
    writer = ts.open(spec, create=True, context=context).result()
    copied = 0
    for t, channel in np.ndindex(*shape[:2]):
        with naming_read_errors(source, time_point=t):
            block = reader[t, channel].read().result()
        writer[t, channel].write(converter(block, f"{where}, time point {t}, channel {channel}")).result()
        copied += block.nbytes
    return chunks, shards, copied


def _copy_attributes(source: NGFFNode, target: NGFFNode) -> None:
    """Give ``target`` (a plate, well or position) exactly the attributes of ``source`` (OME metadata, statistics)."""
    attributes = dict(source.zattrs)
    for key in [key for key in target.zattrs if key not in attributes]:
        del target.zattrs[key]
    target.zattrs.update(attributes)


def _print_progress(meter: ProgressMeter) -> None:
    """Print a progress line when one is due (every tenth of the FOVs or every minute), but not after the last FOV."""
    if meter.steps < meter.total:
        fov_rate, byte_rate = meter.rates()
        print(
            f"Rechunking FOVs {format_count(meter.steps, meter.total)} | {format_rate(fov_rate)} FOV/s | "
            f"{format_rate(byte_rate / 1e6)} MB/s | ETA {format_duration(meter.eta(meter.total - meter.steps))}",
            flush=True,
        )


def rechunk_plate(
    data_path: str | Path,
    output_path: str | Path,
    chunk_yx: int = 128,
    dtype: StorageDtype | None = None,
    compression: Compression = "lz4",
    shard: bool = False,
    overwrite: bool = False,
) -> RechunkReport:
    """Write a copy of an HCS plate with chunks sized for patch reads.

    Every image array of every position (``"0"`` and any pyramid levels) is copied with
    chunks of one time point, one channel, all Z and ``chunk_yx`` x ``chunk_yx`` pixels
    (clamped to the image), reading each source ``(Z, Y, X)`` stack once. The plate, well
    and position attributes are copied as they are: channel names, OME metadata (scales,
    transforms, OMERO display settings) and normalization statistics stay valid, and the
    copy keeps the source's OME-Zarr version. Other groups inside positions (e.g.
    ``labels``) are not copied (a warning names them). A line of progress is printed every
    tenth of the FOVs or every minute. If the copy fails, the partial output is removed.

    Parameters
    ----------
    data_path : str or Path
        The source HCS OME-Zarr plate; it is only read.
    output_path : str or Path
        The plate to write.
    chunk_yx : int
        Chunk height and width in pixels.
    dtype : {"uint16", "float16"}, optional
        Storage type; None keeps the source's. ``"uint16"`` needs integer values in
        [0, 65535] (checked stack by stack); ``"float16"`` rounds, and the largest absolute
        and relative rounding errors are reported (values beyond +-65504 are refused).
    compression : {"none", "lz4", "zstd"}
        Blosc compression of the chunks (see :data:`COMPRESSIONS`).
    shard : bool
        Store each ``(Z, Y, X)`` stack as one shard holding the small chunks: one file per
        stack instead of one per chunk. Needs a plate in zarr format 3 (OME-Zarr 0.5,
        iohub >= 0.3 on Python >= 3.12).
    overwrite : bool
        Replace an existing ``output_path``.

    Returns
    -------
    RechunkReport
        The chunking, storage type, amount copied, time taken and rounding errors.

    Raises
    ------
    FileNotFoundError
        If ``data_path`` does not exist.
    FileExistsError
        If ``output_path`` exists and ``overwrite`` is False.
    ValueError
        On a bad ``chunk_yx``, ``dtype`` or ``compression``; a source that is not an HCS plate
        or has no positions; an ``output_path`` that overlaps the source; ``shard`` on zarr
        format 2; or values that do not fit ``dtype`` (naming the FOV and index).
    ImportError
        If tensorstore (``pip install 'viscy-data[triplet]'``) is missing.
    """
    data_path, output_path = Path(data_path), Path(output_path)
    _validate_options(chunk_yx, dtype, compression)
    ts = import_optional("tensorstore", extra="triplet", feature="viscy rechunk")
    if not data_path.exists():
        raise FileNotFoundError(f"The source plate {data_path} does not exist.")
    with _open_source_plate(data_path) as source:
        positions = dict(source.positions())
        first_image = next(iter(positions.values()))["0"]
        if shard:
            _check_shardable(data_path, first_image)
        _check_storable(data_path, np.dtype(first_image.dtype), dtype)
        _claim_output(data_path, output_path, overwrite)
        _logger.info(
            "Rechunking %d FOVs of %s into %s: %d x %d chunks, %s, %s compression%s",
            len(positions),
            data_path,
            output_path,
            chunk_yx,
            chunk_yx,
            dtype or "source dtype",
            compression,
            ", a shard per stack" if shard else "",
        )
        converter = _Converter(dtype)
        context = tensorstore_context()
        meter = ProgressMeter(len(positions), every_n_steps=math.ceil(len(positions) / 10), every_n_seconds=60.0)
        layout: dict[str, Any] = {}
        try:
            with open_ome_zarr(
                output_path,
                layout="hcs",
                mode="w-",
                channel_names=list(source.channel_names),
                axes=source.axes,
                version=source.version,
            ) as target:
                for name, position in positions.items():
                    target_position = target.create_position(*name.split("/"))
                    copied = 0
                    for array_name, image in position.images():
                        chunks, shards, n_bytes = _copy_array(
                            ts,
                            context,
                            image,
                            output_path / name / array_name,
                            f"FOV {name} (array {array_name})",
                            chunk_yx,
                            converter,
                            compression,
                            shard,
                        )
                        copied += n_bytes
                        if array_name == "0":
                            layout = {"chunks": chunks, "shards": shards}
                    skipped = position.group_keys()
                    if skipped:
                        _logger.warning("Not copied from FOV %s: groups %s.", name, list(skipped))
                    _copy_attributes(position, target_position)
                    if meter.update(copied):
                        _print_progress(meter)
                for well_name, well in source.wells():
                    _copy_attributes(well, target[well_name])
                _copy_attributes(source, target)
        except BaseException:
            if output_path.exists():
                shutil.rmtree(output_path)
            raise
    report = RechunkReport(
        output_path=output_path,
        n_fovs=len(positions),
        chunks=layout["chunks"],
        shards=layout["shards"],
        dtype=dtype or str(first_image.dtype),
        compression=compression,
        bytes_copied=meter.items,
        seconds=meter.elapsed,
        max_abs_error=converter.max_abs_error,
        max_rel_error=converter.max_rel_error,
    )
    print(
        f"Rechunking done: {report.n_fovs} FOVs, {report.bytes_copied / 1e6:.1f} MB in "
        f"{format_duration(report.seconds)}",
        flush=True,
    )
    if dtype == "float16":
        print(
            f"float16 rounding error: max absolute {report.max_abs_error:.3g}, max relative {report.max_rel_error:.3g}",
            flush=True,
        )
    return report
